package linux

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/errdefs"
	"github.com/minishim/containerd-shim-mini-v2/linux/initproc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// Cgroup is the container's control group, whichever hierarchy the host has.
type Cgroup interface {
	// Add moves pid into the cgroup.
	Add(pid int) error
	// Pids lists every process in the cgroup and below.
	Pids() ([]int, error)
	// Delete removes the cgroup; it must be empty.
	Delete() error
	// Path is the path inside the hierarchy.
	Path() string
	// Dir opens the cgroup's directory for clone3(CLONE_INTO_CGROUP), which
	// only cgroup v2 has; ok is false on v1.
	Dir() (dir *os.File, ok bool, err error)
	// Ready says whether the cgroup's directories exist; a systemd unit's
	// appear only when the first Add starts it.
	Ready() bool
	// Update applies resources to the cgroup; they are validated already.
	Update(r *specs.LinuxResources) error
	// Stats are the cgroup's metrics as containerd expects them:
	// io.containerd.cgroups.v1.Metrics or io.containerd.cgroups.v2.Metrics.
	Stats() (proto.Message, error)
	// Freeze and Thaw pause and resume every process in the cgroup.
	Freeze() error
	Thaw() error
	// killAtOnce kills the whole tree at once where the kernel can (cgroup
	// v2's cgroup.kill, Linux 5.14), with no window for a fork to escape;
	// elsewhere it does nothing and the caller signals process by process.
	killAtOnce()
	// WatchOOM calls onOOM for every OOM kill in the cgroup until stop is
	// closed or the cgroup goes away.
	WatchOOM(stop <-chan struct{}, onOOM func()) error
}

// newCgroup makes the container's cgroup as place says, with resources
// applied (nil: none). Under the systemd driver the cgroup appears with the
// first Add.
func newCgroup(place cgroupPlacement, resources *specs.LinuxResources, description string) (Cgroup, error) {
	if resources == nil {
		resources = &specs.LinuxResources{}
	}
	if err := ValidateResources(resources); err != nil {
		return nil, err
	}
	if m := resources.Memory; m != nil && m.Swap != nil && *m.Swap > 0 && (m.Limit == nil || *m.Limit <= 0) {
		return nil, fmt.Errorf("linux.resources.memory.swap %d is set without a memory limit, which it includes: %w", *m.Swap, errdefs.ErrInvalidArgument)
	}
	resources = withStandardDevices(resources)
	if place.Unit != "" {
		return newSystemdCgroup(place, resources, description, cgroups.Mode() == cgroups.Unified), nil
	}
	return newCgroupfs(place.Path, resources)
}

// newCgroupfs creates the cgroup at path on this host's hierarchy.
func newCgroupfs(path string, resources *specs.LinuxResources) (Cgroup, error) {
	if cgroups.Mode() == cgroups.Unified {
		m, err := cgroup2.NewManager(cgroupRoot, path, v2Resources(resources))
		if err != nil {
			return nil, fmt.Errorf("create cgroup %s: %w", path, err)
		}
		// NewManager enables only the controllers the resources name; like
		// runc, enable every available one down the path, so pids, memory
		// and cpu accounting (and later Updates) work for every container.
		if ctrls, err := m.RootControllers(); err == nil {
			_ = m.ToggleControllers(ctrls, cgroup2.Enable)
		}
		return &cgroupV2{path: path, m: m}, nil
	}
	r, bfq := splitBFQWeights(resources)
	cg, err := cgroup1.New(cgroup1.StaticPath(path), r, cgroup1.WithHierarchy(mountedHierarchies))
	if err == nil {
		err = bfq.write(path)
	}
	if err != nil {
		// New stops at the first controller that fails and keeps the
		// directories it made in the others.
		if made, lerr := cgroup1.Load(cgroup1.StaticPath(path), cgroup1.WithHierarchy(mountedHierarchies)); lerr == nil {
			_ = made.Delete()
		}
		return nil, fmt.Errorf("create cgroup %s: %w", path, err)
	}
	return &cgroupV1{path: path, cg: cg}, nil
}

// mountedHierarchies is containerd/cgroups' list of v1 controllers less
// those not mounted where it looks for them (/sys/fs/cgroup/<name>). The
// kernel lists a hierarchy in /proc/self/cgroup wherever it is mounted; one
// mounted elsewhere, or only in another mount namespace (systemd in a
// container mounts the ones it finds unmounted), would otherwise get plain
// directories on the tmpfs, or fail on a read-only one.
func mountedHierarchies() ([]cgroup1.Subsystem, error) {
	all, err := cgroup1.Default()
	if err != nil {
		return nil, err
	}
	mounted := all[:0]
	for _, s := range all {
		if p, ok := s.(interface{ Path(string) string }); ok && !isCgroupMount(p.Path("/")) {
			continue
		}
		mounted = append(mounted, s)
	}
	if cgroups.Mode() == cgroups.Hybrid {
		mounted = append(mounted, hybridUnified{})
	}
	return mounted, nil
}

// hybridUnifiedRoot is where a hybrid host mounts the cgroup v2 hierarchy
// (without controllers) beside the v1 ones.
const hybridUnifiedRoot = "/sys/fs/cgroup/unified"

// hybridUnified is that v2 hierarchy as one more v1 "subsystem": the
// container's cgroup is made, joined and removed there too, as runc does.
// systemd on a hybrid host tracks a unit's processes there, so an exec
// that is not in the scope's unified cgroup is not the scope's.
type hybridUnified struct{}

func (hybridUnified) Name() cgroup1.Name { return "unified" }

func (hybridUnified) Path(path string) string { return filepath.Join(hybridUnifiedRoot, path) }

func isCgroupMount(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false
	}
	return st.Type == unix.CGROUP_SUPER_MAGIC || st.Type == unix.CGROUP2_SUPER_MAGIC
}

// standardDevices are allowed after a spec's own device rules, as runc
// allows them: the devices every container gets (/dev/null, zero, full,
// random, urandom, tty, ptmx, the pts and tun), and mknod of any node,
// which alone opens nothing. Without them a spec that denies every device,
// as the containerd client's default does, breaks even `cat </dev/null`.
func standardDevices() []specs.LinuxDeviceCgroup {
	dev := func(typ string, major, minor int64, access string) specs.LinuxDeviceCgroup {
		d := specs.LinuxDeviceCgroup{Allow: true, Type: typ, Access: access}
		if major >= 0 {
			d.Major = &major
		}
		if minor >= 0 {
			d.Minor = &minor
		}
		return d
	}
	return []specs.LinuxDeviceCgroup{
		dev("c", -1, -1, "m"), dev("b", -1, -1, "m"),
		dev("c", 1, 3, "rwm"), dev("c", 1, 5, "rwm"), dev("c", 1, 7, "rwm"),
		dev("c", 1, 8, "rwm"), dev("c", 1, 9, "rwm"), dev("c", 5, 0, "rwm"),
		dev("c", 5, 2, "rwm"), dev("c", 136, -1, "rwm"), dev("c", 10, 200, "rwm"),
	}
}

// withStandardDevices appends standardDevices() to the spec's rules. As
// with runc, the rules start from "deny all": a spec without any gets the
// standard devices only (a privileged spec says "allow all" outright).
// r itself is not changed.
func withStandardDevices(r *specs.LinuxResources) *specs.LinuxResources {
	out := *r
	out.Devices = append([]specs.LinuxDeviceCgroup(nil), r.Devices...)
	if len(out.Devices) == 0 {
		out.Devices = append(out.Devices, specs.LinuxDeviceCgroup{Allow: false, Access: "rwm"})
	}
	out.Devices = append(out.Devices, standardDevices()...)
	return &out
}

// bfqWeights are block IO weights for a v1 blkio controller whose
// scheduler is BFQ: the kernel then has blkio.bfq.weight and
// blkio.bfq.weight_device in place of CFQ's blkio.weight and
// blkio.weight_device, which containerd/cgroups alone writes.
type bfqWeights struct {
	weight  *uint16
	devices []specs.LinuxWeightDevice
}

// splitBFQWeights takes the weights out of r when this host's blkio
// controller has only the BFQ files; r itself is not changed.
func splitBFQWeights(r *specs.LinuxResources) (*specs.LinuxResources, bfqWeights) {
	if r == nil {
		return r, bfqWeights{}
	}
	b := r.BlockIO
	if b == nil || (b.Weight == nil && len(b.WeightDevice) == 0) {
		return r, bfqWeights{}
	}
	// The root cgroup has CFQ's weight file but never BFQ's, whose
	// statistics show it is there instead.
	if _, err := os.Stat("/sys/fs/cgroup/blkio/blkio.weight"); err == nil {
		return r, bfqWeights{}
	}
	if _, err := os.Stat("/sys/fs/cgroup/blkio/blkio.bfq.io_serviced"); err != nil {
		return r, bfqWeights{}
	}
	out := *r
	blkio := *b
	blkio.Weight, blkio.WeightDevice = nil, nil
	out.BlockIO = &blkio
	return &out, bfqWeights{weight: b.Weight, devices: b.WeightDevice}
}

func (w bfqWeights) write(path string) error {
	dir := filepath.Join("/sys/fs/cgroup/blkio", path)
	if w.weight != nil {
		if err := os.WriteFile(filepath.Join(dir, "blkio.bfq.weight"), []byte(strconv.Itoa(int(*w.weight))), 0); err != nil {
			return fmt.Errorf("linux.resources.blockIO.weight: %w", err)
		}
	}
	for _, d := range w.devices {
		if d.Weight == nil {
			continue
		}
		line := fmt.Sprintf("%d:%d %d", d.Major, d.Minor, *d.Weight)
		if err := os.WriteFile(filepath.Join(dir, "blkio.bfq.weight_device"), []byte(line), 0); err != nil {
			return fmt.Errorf("linux.resources.blockIO.weightDevice %d:%d: %w", d.Major, d.Minor, err)
		}
	}
	return nil
}

// loadCgroup opens an existing cgroup; a missing one is ErrNotFound.
func loadCgroup(place cgroupPlacement) (Cgroup, error) {
	if place.Unit != "" {
		// Not returned directly: a nil *systemdCgroup is a non-nil Cgroup.
		sd, err := loadSystemdCgroup(place, cgroups.Mode() == cgroups.Unified)
		if err != nil {
			return nil, err
		}
		return sd, nil
	}
	return loadCgroupfs(place.Path)
}

func loadCgroupfs(path string) (Cgroup, error) {
	if cgroups.Mode() == cgroups.Unified {
		if _, err := os.Stat(filepath.Join(cgroupRoot, path)); err != nil {
			return nil, fmt.Errorf("load cgroup %s: %w", path, errdefs.ErrNotFound)
		}
		m, err := cgroup2.Load(path)
		if err != nil {
			return nil, fmt.Errorf("load cgroup %s: %w", path, err)
		}
		return &cgroupV2{path: path, m: m}, nil
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(path), cgroup1.WithHierarchy(mountedHierarchies))
	if err != nil {
		if errors.Is(err, cgroup1.ErrCgroupDeleted) {
			return nil, fmt.Errorf("load cgroup %s: %w", path, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("load cgroup %s: %w", path, err)
	}
	return &cgroupV1{path: path, cg: cg}, nil
}

// cgroupRoot is where the host mounts its cgroup hierarchies.
const cgroupRoot = initproc.CgroupRoot

// memoryInOrder splits an update that sets both the memory limit and the
// memory+swap limit so that the kernel's rule, limit <= memory+swap, holds
// after every write, raising or lowering (containerd's CRI sends the two
// together, as Kubernetes' in-place resize does): memory+swap goes first
// when the new limit is above the current memory+swap (or memory+swap
// becomes unlimited), last otherwise. Anything else is one step.
func memoryInOrder(r *specs.LinuxResources, currentMemsw func() (int64, error)) ([]*specs.LinuxResources, error) {
	if r == nil || r.Memory == nil || r.Memory.Limit == nil || r.Memory.Swap == nil || *r.Memory.Swap == 0 {
		return []*specs.LinuxResources{r}, nil
	}
	// The swap step holds nothing else: the rest is written once.
	swap := specs.LinuxResources{Memory: &specs.LinuxMemory{Swap: r.Memory.Swap}}
	rest := *r
	mem := *r.Memory
	mem.Swap = nil
	rest.Memory = &mem
	first := *r.Memory.Swap == -1
	if !first {
		cur, err := currentMemsw()
		if err != nil {
			return nil, err
		}
		first = cur >= 0 && *r.Memory.Limit > cur
	}
	if first {
		return []*specs.LinuxResources{&swap, &rest}, nil
	}
	return []*specs.LinuxResources{&rest, &swap}, nil
}

// readCgroupInt reads a control file holding one number; the kernel's
// "unlimited" (too large for an int64) reads as -1.
func readCgroupInt(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	if v > math.MaxInt64 {
		return -1, nil
	}
	return int64(v), nil
}

type cgroupV1 struct {
	path string
	cg   cgroup1.Cgroup
}

func (c *cgroupV1) Path() string { return c.path }

func (c *cgroupV1) Dir() (*os.File, bool, error) { return nil, false, nil }

func (c *cgroupV1) Ready() bool { return true }

func (c *cgroupV1) killAtOnce() {}

func (c *cgroupV1) Update(r *specs.LinuxResources) error {
	r, bfq := splitBFQWeights(r)
	steps, err := memoryInOrder(r, func() (int64, error) {
		return readCgroupInt(filepath.Join(cgroupRoot, "memory", c.path, "memory.memsw.limit_in_bytes"))
	})
	if err != nil {
		return fmt.Errorf("update cgroup %s: %w", c.path, err)
	}
	for _, step := range steps {
		if err := c.cg.Update(step); err != nil {
			return fmt.Errorf("update cgroup %s: %w", c.path, err)
		}
	}
	if err := bfq.write(c.path); err != nil {
		return fmt.Errorf("update cgroup %s: %w", c.path, err)
	}
	return nil
}

func (c *cgroupV1) Stats() (proto.Message, error) {
	m, err := c.cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return nil, fmt.Errorf("stats of cgroup %s: %w", c.path, err)
	}
	return m, nil
}

func (c *cgroupV1) Freeze() error {
	if err := c.cg.Freeze(); err != nil {
		return fmt.Errorf("freeze cgroup %s: %w", c.path, err)
	}
	return nil
}

func (c *cgroupV1) Thaw() error {
	if err := c.cg.Thaw(); err != nil {
		return fmt.Errorf("thaw cgroup %s: %w", c.path, err)
	}
	return nil
}

// WatchOOM reads the memory controller's OOM eventfd: each read is one or
// more OOM events.
func (c *cgroupV1) WatchOOM(stop <-chan struct{}, onOOM func()) error {
	fd, err := c.cg.OOMEventFD()
	if err != nil {
		return fmt.Errorf("oom events of cgroup %s: %w", c.path, err)
	}
	// Non-blocking, so the runtime poller serves it and Close ends a read.
	if err := unix.SetNonblock(int(fd), true); err != nil {
		unix.Close(int(fd))
		return err
	}
	f := os.NewFile(fd, "oom-eventfd")
	go func() {
		<-stop
		f.Close()
	}()
	go func() {
		buf := make([]byte, 8)
		for {
			if _, err := f.Read(buf); err != nil {
				return
			}
			// The eventfd also fires when the cgroup is removed.
			if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/memory", c.path)); err != nil {
				return
			}
			onOOM()
		}
	}()
	return nil
}

func (c *cgroupV1) Add(pid int) error {
	if err := c.cg.Add(cgroup1.Process{Pid: pid}); err != nil {
		return fmt.Errorf("add pid %d to cgroup %s: %w", pid, c.path, err)
	}
	return nil
}

func (c *cgroupV1) Pids() ([]int, error) {
	// Every v1 hierarchy holds every process; the freezer is always mounted
	// where containers run, and pids or devices stand in for it.
	var lastErr error
	allGone := true
	for _, sub := range []cgroup1.Name{cgroup1.Freezer, cgroup1.Pids, cgroup1.Devices, cgroup1.Memory} {
		procs, err := c.cg.Processes(sub, true)
		if err != nil {
			lastErr = err
			allGone = allGone && cgroupGone(err)
			continue
		}
		pids := make([]int, 0, len(procs))
		for _, p := range procs {
			pids = append(pids, p.Pid)
		}
		return uniquePids(pids), nil
	}
	if allGone {
		// Removed already (containers sharing one cgroupsPath, say, one
		// of which was deleted first): gone is empty.
		return nil, nil
	}
	return nil, fmt.Errorf("list processes of cgroup %s: %w", c.path, lastErr)
}

// cgroupGone says whether err comes from a cgroup that no longer exists,
// or is being torn down by the kernel (ENODEV from its files then).
func cgroupGone(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENODEV)
}

// Delete removes the cgroup's directory in every hierarchy, children
// first. containerd/cgroups' Delete first walks each hierarchy's tree,
// stat'ing every control file, to find processes the kernel refuses the
// rmdir for anyway: 1.5 ms of a 3 ms Delete here.
func (c *cgroupV1) Delete() error {
	var errs []error
	for _, h := range c.hierarchyDirs() {
		if err := removeCgroupDir(h.dir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delete cgroup %s: %w", c.path, err)
	}
	return nil
}

// hierarchyDir is a v1 cgroup's directory in one hierarchy (the unified
// one of a hybrid host among them, named "unified").
type hierarchyDir struct {
	name cgroup1.Name
	dir  string
}

// hierarchyDirs are the cgroup's directories, one per hierarchy.
func (c *cgroupV1) hierarchyDirs() []hierarchyDir {
	var out []hierarchyDir
	for _, s := range c.cg.Subsystems() {
		if p, ok := s.(interface{ Path(string) string }); ok {
			out = append(out, hierarchyDir{name: s.Name(), dir: p.Path(c.path)})
		}
	}
	return out
}

// removeCgroupDir removes a v1 cgroup directory and the cgroups below it,
// deepest first; one that still holds a process fails with EBUSY. Gone
// already is done (cpu and cpuacct name one directory, say).
func removeCgroupDir(dir string) error {
	err := unix.Rmdir(dir)
	switch {
	case err == nil || errors.Is(err, unix.ENOENT):
		return nil
	case !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.ENOTEMPTY):
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	ents, rerr := os.ReadDir(dir)
	if rerr != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	children := false
	for _, e := range ents {
		if e.IsDir() {
			children = true
			if err := removeCgroupDir(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if !children {
		// Busy with processes of its own.
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// v2Resources converts spec resources for cgroup v2. ToResources leaves the
// device rules out, and without them no eBPF device filter is attached:
// every device would be allowed.
func v2Resources(r *specs.LinuxResources) *cgroup2.Resources {
	res := cgroup2.ToResources(r)
	res.Devices = normalizeDeviceRules(r.Devices)
	// ToResources subtracts the limit from an unlimited (-1) swap too.
	if m := r.Memory; m != nil && m.Swap != nil && *m.Swap == -1 && res.Memory != nil {
		unlimited := int64(-1)
		res.Memory.Swap = &unlimited
	}
	return res
}

// normalizeDeviceRules spells out the spec's defaults for the eBPF filter
// builder, which dereferences Major and Minor and knows no empty type: an
// empty type is "a" (all), a missing major or minor is -1 (any).
func normalizeDeviceRules(in []specs.LinuxDeviceCgroup) []specs.LinuxDeviceCgroup {
	if len(in) == 0 {
		return nil
	}
	out := make([]specs.LinuxDeviceCgroup, len(in))
	for i, d := range in {
		if d.Type == "" {
			d.Type = "a"
		}
		if d.Major == nil {
			any := int64(-1)
			d.Major = &any
		}
		if d.Minor == nil {
			any := int64(-1)
			d.Minor = &any
		}
		out[i] = d
	}
	return out
}

type cgroupV2 struct {
	path string
	m    *cgroup2.Manager
}

func (c *cgroupV2) Path() string { return c.path }

func (c *cgroupV2) Ready() bool { return true }

func (c *cgroupV2) killAtOnce() {
	if _, err := os.Stat(filepath.Join(cgroupRoot, c.path, "cgroup.kill")); err == nil {
		_ = c.m.Kill()
	}
}

func (c *cgroupV2) Dir() (*os.File, bool, error) {
	f, err := os.OpenFile(filepath.Join(cgroupRoot, c.path), unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, false, fmt.Errorf("open cgroup %s: %w", c.path, err)
	}
	return f, true, nil
}

func (c *cgroupV2) Update(r *specs.LinuxResources) error {
	if err := c.m.Update(v2Resources(r)); err != nil {
		return fmt.Errorf("update cgroup %s: %w", c.path, err)
	}
	return nil
}

func (c *cgroupV2) Stats() (proto.Message, error) {
	m, err := c.m.Stat()
	if err != nil {
		return nil, fmt.Errorf("stats of cgroup %s: %w", c.path, err)
	}
	return m, nil
}

func (c *cgroupV2) Freeze() error {
	if err := c.m.Freeze(); err != nil {
		return fmt.Errorf("freeze cgroup %s: %w", c.path, err)
	}
	return nil
}

func (c *cgroupV2) Thaw() error {
	if err := c.m.Thaw(); err != nil {
		return fmt.Errorf("thaw cgroup %s: %w", c.path, err)
	}
	return nil
}

// WatchOOM follows memory.events; an OOM kill shows as a rising oom_kill.
func (c *cgroupV2) WatchOOM(stop <-chan struct{}, onOOM func()) error {
	events, errs := c.m.EventChan()
	go func() {
		var kills uint64
		for {
			select {
			case <-stop:
				return
			case <-errs:
				return
			case e := <-events:
				if e.OOMKill > kills {
					kills = e.OOMKill
					onOOM()
				}
			}
		}
	}()
	return nil
}

func (c *cgroupV2) Add(pid int) error {
	if err := c.m.AddProc(uint64(pid)); err != nil {
		return fmt.Errorf("add pid %d to cgroup %s: %w", pid, c.path, err)
	}
	return nil
}

func (c *cgroupV2) Pids() ([]int, error) {
	procs, err := c.m.Procs(true)
	for retry := 0; err != nil && cgroupGone(err) && retry < 3; retry++ {
		// systemd removes a scope's cgroup once it is empty: gone (or
		// going: ENODEV) is empty. A child cgroup removed during the walk
		// is only a race.
		if errors.Is(err, unix.ENODEV) || c.removed() {
			return nil, nil
		}
		procs, err = c.m.Procs(true)
	}
	if err != nil {
		return nil, fmt.Errorf("list processes of cgroup %s: %w", c.path, err)
	}
	pids := make([]int, 0, len(procs))
	for _, p := range procs {
		pids = append(pids, int(p))
	}
	return uniquePids(pids), nil
}

func (c *cgroupV2) Delete() error {
	if err := c.m.Delete(); err != nil {
		// The library walks the tree first: a cgroup another container
		// sharing this cgroupsPath removed already (or systemd did) fails
		// that walk with ENOENT. Gone is deleted.
		if cgroupGone(err) && c.removed() {
			return nil
		}
		return fmt.Errorf("delete cgroup %s: %w", c.path, err)
	}
	return nil
}

// removed says whether the cgroup's directory is gone.
func (c *cgroupV2) removed() bool {
	_, err := os.Stat(filepath.Join(cgroupRoot, c.path))
	return errors.Is(err, os.ErrNotExist)
}

func uniquePids(pids []int) []int {
	seen := make(map[int]bool, len(pids))
	out := pids[:0]
	for _, p := range pids {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// killCgroup sends SIGKILL to the processes in cg that are the
// container's (mine; nil: all of them) until none is left or the deadline
// passes; processes can fork while we kill, so it loops.
func killCgroup(cg Cgroup, deadline time.Duration, mine func(pid int) bool) error {
	if mine == nil {
		cg.killAtOnce()
	}
	end := time.Now().Add(deadline)
	for {
		pids, err := cg.Pids()
		if err != nil {
			return err
		}
		if mine != nil {
			pids = slices.DeleteFunc(pids, func(pid int) bool { return !mine(pid) })
		}
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		if time.Now().After(end) {
			return fmt.Errorf("cgroup %s still has processes %v: %w", cg.Path(), pids, errdefs.ErrUnavailable)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// signalCgroup sends sig once to every process in cg that mine says is
// the container's.
func signalCgroup(cg Cgroup, sig unix.Signal, mine func(pid int) bool) error {
	pids, err := cg.Pids()
	if err != nil {
		return err
	}
	for _, pid := range pids {
		if !mine(pid) {
			continue
		}
		if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("signal %d to pid %d: %w", sig, pid, err)
		}
	}
	return nil
}

// JoinCgroup moves pid into the existing cgroupfs cgroup path (in every
// hierarchy on v1 and hybrid hosts). what names the path in errors.
func JoinCgroup(what, path string, pid int) error {
	if isSystemdCgroupsPath(path) {
		return fmt.Errorf("%s %q: a systemd slice:prefix:name is not a cgroup to join; give its cgroupfs path: %w", what, path, errdefs.ErrInvalidArgument)
	}
	clean, err := cleanCgroupfsPath(what, path)
	if err != nil {
		return err
	}
	cg, err := loadCgroupfs(clean)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := cg.Add(pid); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
