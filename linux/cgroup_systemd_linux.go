package linux

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/errdefs"
	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
	"github.com/minishim/containerd-shim-mini-v2/linux/initproc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
)

// systemdTimeout bounds every conversation with systemd: a wedged systemd
// fails the request instead of hanging it.
const systemdTimeout = 30 * time.Second

// systemdRunning says whether systemd is this host's init, the way
// sd_booted(3) tells.
func systemdRunning() bool {
	_, err := os.Stat("/run/systemd/system")
	return err == nil
}

// systemdCgroup is a container's cgroup under the systemd driver: a
// transient scope unit, delegated to us, that systemd creates around the
// container's first process. Until that process exists there is no cgroup;
// afterwards the unit's cgroup is read and written directly, as the
// cgroupfs driver does, and systemd is told of every limit too, so that a
// daemon-reload re-applies ours instead of its defaults.
type systemdCgroup struct {
	place       cgroupPlacement
	description string
	unified     bool

	mu        sync.Mutex
	resources *specs.LinuxResources // applied when the unit starts
	fs        Cgroup                // the unit's cgroup once it exists
	// live: the unit may exist, so Delete must stop it (once).
	live bool
}

func newSystemdCgroup(place cgroupPlacement, resources *specs.LinuxResources, description string, unified bool) *systemdCgroup {
	return &systemdCgroup{place: place, description: description, unified: unified, resources: resources}
}

// loadSystemdCgroup is the cgroup of a unit that already exists.
func loadSystemdCgroup(place cgroupPlacement, unified bool) (*systemdCgroup, error) {
	fs, err := loadCgroupfs(place.Path)
	if err != nil && !errdefs.IsNotFound(err) {
		return nil, err
	}
	return &systemdCgroup{place: place, unified: unified, fs: fs, live: true}, nil
}

func (c *systemdCgroup) Path() string { return c.place.Path }

// Dir is the unit's cgroup for clone3 once the unit runs (execs on v2);
// before, there is none: systemd makes it around a process.
func (c *systemdCgroup) Dir() (*os.File, bool, error) {
	fs, err := c.started()
	if err != nil {
		return nil, false, nil
	}
	return fs.Dir()
}

func (c *systemdCgroup) killAtOnce() {
	if fs, err := c.started(); err == nil {
		fs.killAtOnce()
	}
}

func (c *systemdCgroup) Ready() bool {
	_, err := c.started()
	return err == nil
}

// Add starts the unit around the container's first process; later
// processes (execs) join its cgroup directly.
func (c *systemdCgroup) Add(pid int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fs != nil {
		return c.fs.Add(pid)
	}
	props := []sddbus.Property{
		sddbus.PropDescription(c.description),
		sddbus.PropSlice(c.place.Slice),
		sddbus.PropPids(uint32(pid)),
		unitProperty("Delegate", true),
		unitProperty("DefaultDependencies", false),
		unitProperty("MemoryAccounting", true),
		unitProperty("CPUAccounting", true),
		unitProperty("TasksAccounting", true),
	}
	if c.unified {
		props = append(props, unitProperty("IOAccounting", true))
	} else {
		props = append(props, unitProperty("BlockIOAccounting", true))
	}
	if c.resources == nil {
		c.resources = &specs.LinuxResources{}
	}
	props = append(props, resourceProperties(c.resources, c.unified)...)
	props = append(props, deviceProperties(c.resources.Devices, procDevices)...)
	c.live = true
	if err := c.withSystemd(func(ctx context.Context, conn *sddbus.Conn) error {
		return startScope(ctx, conn, c.place.Unit, supportedProperties(props, systemdVersion(conn)))
	}); err != nil {
		return fmt.Errorf("create systemd unit %s in %s for pid %d: %w", c.place.Unit, c.place.Slice, pid, err)
	}
	// systemd made the unit's cgroup where it manages controllers; the
	// cgroupfs view adds the other v1 hierarchies and writes every limit,
	// systemd's properties covering only some.
	fs, err := newCgroupfs(c.place.Path, c.resources)
	if err == nil {
		err = fs.Add(pid)
	}
	if err != nil {
		if stopErr := c.stopUnit(); stopErr != nil {
			err = fmt.Errorf("%w (and stopping unit %s failed: %v)", err, c.place.Unit, stopErr)
		}
		return err
	}
	c.fs = fs
	return nil
}

func (c *systemdCgroup) started() (Cgroup, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fs == nil {
		return nil, fmt.Errorf("systemd unit %s has not been started: %w", c.place.Unit, errdefs.ErrFailedPrecondition)
	}
	return c.fs, nil
}

func (c *systemdCgroup) Pids() ([]int, error) {
	fs, err := c.started()
	if err != nil {
		// No unit yet: no process either.
		return nil, nil
	}
	return fs.Pids()
}

func (c *systemdCgroup) Update(r *specs.LinuxResources) error {
	if r == nil {
		return nil
	}
	fs, err := c.started()
	if err != nil {
		return err
	}
	// Device properties stay out: on v1 systemd rewrites the rules from
	// "deny all" up, and the running container would see EPERM on its
	// devices in between (the cgroup files are updated in place below).
	if props := resourceProperties(r, c.unified); len(props) > 0 {
		if err := c.withSystemd(func(ctx context.Context, conn *sddbus.Conn) error {
			return conn.SetUnitPropertiesContext(ctx, c.place.Unit, true, supportedProperties(props, systemdVersion(conn))...)
		}); err != nil {
			return fmt.Errorf("update systemd unit %s: %w", c.place.Unit, err)
		}
	}
	return fs.Update(r)
}

func (c *systemdCgroup) Stats() (proto.Message, error) {
	fs, err := c.started()
	if err != nil {
		return nil, err
	}
	return fs.Stats()
}

func (c *systemdCgroup) Freeze() error {
	fs, err := c.started()
	if err != nil {
		return err
	}
	return fs.Freeze()
}

func (c *systemdCgroup) Thaw() error {
	fs, err := c.started()
	if err != nil {
		return err
	}
	return fs.Thaw()
}

func (c *systemdCgroup) WatchOOM(stop <-chan struct{}, onOOM func()) error {
	fs, err := c.started()
	if err != nil {
		return err
	}
	return fs.WatchOOM(stop, onOOM)
}

// Delete stops the unit, which has systemd remove the cgroups it made,
// and removes the directories made in the hierarchies it does not manage.
func (c *systemdCgroup) Delete() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.stopUnit(); err != nil {
		return err
	}
	if c.fs != nil {
		if err := c.fs.Delete(); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		c.fs = nil
	}
	return nil
}

// stopUnit stops the unit if it may exist; once stopped, never again
// (Delete is retried while the kernel lets go of the cgroup).
func (c *systemdCgroup) stopUnit() error {
	if !c.live {
		return nil
	}
	err := c.withSystemd(func(ctx context.Context, conn *sddbus.Conn) error {
		done := make(chan string, 1)
		if _, err := conn.StopUnitContext(ctx, c.place.Unit, "replace", done); err != nil {
			if isDBusError(err, "org.freedesktop.systemd1.NoSuchUnit") {
				return nil
			}
			return err
		}
		if err := awaitJob(ctx, done); err != nil {
			return err
		}
		// A unit that failed stays listed until reset; a later container
		// of the same id would find it.
		_ = conn.ResetFailedUnitContext(ctx, c.place.Unit)
		return nil
	})
	if err != nil {
		return fmt.Errorf("stop systemd unit %s: %w", c.place.Unit, err)
	}
	c.live = false
	return nil
}

// withSystemd runs f on a fresh connection to systemd: the system bus, or
// systemd's own socket where no bus runs.
func (c *systemdCgroup) withSystemd(f func(context.Context, *sddbus.Conn) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), systemdTimeout)
	defer cancel()
	conn, err := sddbus.NewWithContext(ctx)
	if err != nil {
		return fmt.Errorf("connect to systemd: %v: %w", err, errdefs.ErrUnavailable)
	}
	defer conn.Close()
	return f(ctx, conn)
}

// startScope starts the transient unit and waits for systemd to finish the
// job. A failed unit of the same name left by an earlier container is reset
// and the start tried once more.
func startScope(ctx context.Context, conn *sddbus.Conn, unit string, props []sddbus.Property) error {
	for attempt := 0; ; attempt++ {
		done := make(chan string, 1)
		_, err := conn.StartTransientUnitContext(ctx, unit, "replace", props, done)
		if err == nil {
			return awaitJob(ctx, done)
		}
		if !isDBusError(err, "org.freedesktop.systemd1.UnitExists") {
			return classifyDBusError(err)
		}
		if attempt > 0 {
			return fmt.Errorf("%v: %w", err, errdefs.ErrAlreadyExists)
		}
		_ = conn.ResetFailedUnitContext(ctx, unit)
	}
}

func awaitJob(ctx context.Context, done <-chan string) error {
	select {
	case result := <-done:
		if result != "done" {
			return fmt.Errorf("systemd job ended %q (see the unit's journal): %w", result, errdefs.ErrFailedPrecondition)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("no answer from systemd in %v: %w", systemdTimeout, ctx.Err())
	}
}

func isDBusError(err error, name string) bool {
	var derr dbus.Error
	return errors.As(err, &derr) && derr.Name == name
}

// classifyDBusError gives systemd's refusals of what we asked an errdefs
// class: a property or value it does not take is the request's fault.
func classifyDBusError(err error) error {
	var derr dbus.Error
	if !errors.As(err, &derr) {
		return err
	}
	switch derr.Name {
	case "org.freedesktop.DBus.Error.InvalidArgs", "org.freedesktop.DBus.Error.PropertyReadOnly",
		"org.freedesktop.DBus.Error.UnknownProperty":
		return fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument)
	case "org.freedesktop.DBus.Error.AccessDenied":
		return fmt.Errorf("%v: %w", err, errdefs.ErrPermissionDenied)
	}
	return err
}

// systemdVersion is the running systemd's version number, 0 if unknown.
func systemdVersion(conn *sddbus.Conn) int {
	v, err := conn.GetManagerProperty("Version")
	if err != nil {
		return 0
	}
	return parseSystemdVersion(v)
}

// parseSystemdVersion reads the leading number of a Version property as
// D-Bus renders it ("\"252.38-1~deb12u1\"").
func parseSystemdVersion(v string) int {
	v = strings.TrimLeft(v, "\"v")
	end := 0
	for end < len(v) && v[end] >= '0' && v[end] <= '9' {
		end++
	}
	n, _ := strconv.Atoi(v[:end])
	return n
}

// propertySince is the first systemd version that knows each property we
// may send that older ones (still on some LTS hosts) refuse outright.
var propertySince = map[string]int{
	"CPUQuotaPeriodUSec": 242,
	"AllowedCPUs":        244,
	"AllowedMemoryNodes": 244,
}

// supportedProperties leaves out what this systemd does not know; the
// cgroup files written afterwards still carry those limits. An unknown
// version (0) drops nothing.
func supportedProperties(props []sddbus.Property, version int) []sddbus.Property {
	if version == 0 {
		return props
	}
	out := props[:0:0]
	for _, p := range props {
		if since, ok := propertySince[p.Name]; ok && version < since {
			continue
		}
		out = append(out, p)
	}
	return out
}

func unitProperty(name string, value any) sddbus.Property {
	return sddbus.Property{Name: name, Value: dbus.MakeVariant(value)}
}

// resourceProperties tells systemd the limits it knows of, in its own terms;
// systemd rewrites a unit's cgroup from its properties on daemon-reload.
// Limits it has no property for are written only to the cgroup.
func resourceProperties(r *specs.LinuxResources, unified bool) []sddbus.Property {
	if r == nil {
		return nil
	}
	var props []sddbus.Property
	if m := r.Memory; m != nil {
		if unified {
			if m.Limit != nil && *m.Limit != 0 {
				props = append(props, unitProperty("MemoryMax", limitValue(*m.Limit)))
			}
			if m.Reservation != nil && *m.Reservation > 0 {
				props = append(props, unitProperty("MemoryLow", uint64(*m.Reservation)))
			}
			// The spec's swap is memory plus swap; systemd's is swap alone.
			if m.Swap != nil && *m.Swap != 0 {
				swap := uint64(math.MaxUint64)
				if *m.Swap > 0 && m.Limit != nil && *m.Limit > 0 && *m.Swap >= *m.Limit {
					swap = uint64(*m.Swap - *m.Limit)
				}
				props = append(props, unitProperty("MemorySwapMax", swap))
			}
		} else if m.Limit != nil && *m.Limit != 0 {
			props = append(props, unitProperty("MemoryLimit", limitValue(*m.Limit)))
		}
	}
	if cpu := r.CPU; cpu != nil {
		if cpu.Shares != nil && *cpu.Shares != 0 {
			if unified {
				props = append(props, unitProperty("CPUWeight", cgroup2.ConvertCPUSharesToCgroupV2Value(*cpu.Shares)))
			} else {
				props = append(props, unitProperty("CPUShares", *cpu.Shares))
			}
		}
		props = append(props, cpuQuotaProperties(cpu)...)
		if unified {
			if mask, ok := cpuMask(cpu.Cpus); ok {
				props = append(props, unitProperty("AllowedCPUs", mask))
			}
			if mask, ok := cpuMask(cpu.Mems); ok {
				props = append(props, unitProperty("AllowedMemoryNodes", mask))
			}
		}
	}
	if r.Pids != nil && r.Pids.Limit != nil && *r.Pids.Limit != 0 {
		props = append(props, unitProperty("TasksMax", limitValue(*r.Pids.Limit)))
	}
	if b := r.BlockIO; b != nil && b.Weight != nil && *b.Weight != 0 {
		if unified {
			// blkio's 10..1000 onto io's 1..10000.
			props = append(props, unitProperty("IOWeight", 1+(uint64(*b.Weight)-10)*9999/990))
		} else {
			props = append(props, unitProperty("BlockIOWeight", uint64(*b.Weight)))
		}
	}
	return props
}

// limitValue is a spec limit for systemd: negative means none, which
// systemd spells as the largest uint64.
func limitValue(v int64) uint64 {
	if v < 0 {
		return math.MaxUint64
	}
	return uint64(v)
}

// cpuQuotaProperties turns quota and period into systemd's quota per
// second. systemd keeps quotas in 1% steps of a CPU, so an odd quota is
// rounded up to the next step: the unit then allows at least what the spec
// asks, and after a daemon-reload (when systemd rewrites the cgroup from
// the unit) a little more (12345/100000 becomes 13000/100000).
func cpuQuotaProperties(cpu *specs.LinuxCPU) []sddbus.Property {
	var props []sddbus.Property
	period := uint64(100000)
	if cpu.Period != nil && *cpu.Period != 0 {
		period = *cpu.Period
		props = append(props, unitProperty("CPUQuotaPeriodUSec", period))
	}
	if cpu.Quota != nil && *cpu.Quota != 0 {
		perSec := uint64(math.MaxUint64)
		if *cpu.Quota > 0 {
			perSec = uint64(*cpu.Quota) * 1000000 / period
			if perSec%10000 != 0 {
				perSec = (perSec/10000 + 1) * 10000
			}
		}
		props = append(props, unitProperty("CPUQuotaPerSecUSec", perSec))
	}
	return props
}

// cpuMask is a cpuset list as the little-endian bitmask systemd takes.
func cpuMask(list string) ([]byte, bool) {
	if strings.TrimSpace(list) == "" {
		return nil, false
	}
	set, err := initproc.ParseCPUList(list)
	if err != nil || len(set) == 0 {
		return nil, false
	}
	max := 0
	for n := range set {
		if n > max {
			max = n
		}
	}
	mask := make([]byte, max/8+1)
	for n := range set {
		mask[n/8] |= 1 << (n % 8)
	}
	return mask, true
}

// deviceAllow is one entry of systemd's DeviceAllow: a device node or
// class and its access.
type deviceAllow struct {
	Path   string
	Access string
}

// deviceProperties states the spec's device rules as systemd's allow list.
// systemd knows only allow lists: rules that end in "allow all" (perhaps
// with exceptions) leave the policy to the cgroup alone.
func deviceProperties(rules []specs.LinuxDeviceCgroup, majorName func(kind string, major int64) (string, bool)) []sddbus.Property {
	if len(rules) == 0 {
		return nil
	}
	allowAll := true
	var allowed []specs.LinuxDeviceCgroup
	for _, d := range rules {
		if isAllDevices(d) {
			allowAll, allowed = d.Allow, nil
			continue
		}
		if allowAll {
			// An exception to "allow all" has no systemd spelling.
			continue
		}
		if d.Allow {
			allowed = append(allowed, d)
		} else {
			allowed = removeDeviceRule(allowed, d)
		}
	}
	if allowAll {
		return []sddbus.Property{unitProperty("DevicePolicy", "auto"), unitProperty("DeviceAllow", []deviceAllow{})}
	}
	entries := []deviceAllow{}
	for _, d := range allowed {
		kinds := []string{"char", "block"}
		switch d.Type {
		case "c":
			kinds = kinds[:1]
		case "b":
			kinds = kinds[1:]
		}
		for _, kind := range kinds {
			if path, ok := deviceAllowPath(kind, d, majorName); ok {
				entries = append(entries, deviceAllow{Path: path, Access: d.Access})
			}
		}
	}
	return []sddbus.Property{unitProperty("DevicePolicy", "strict"), unitProperty("DeviceAllow", entries)}
}

func isAllDevices(d specs.LinuxDeviceCgroup) bool {
	return (d.Type == "" || d.Type == "a") && (d.Major == nil || *d.Major < 0) && (d.Minor == nil || *d.Minor < 0)
}

func removeDeviceRule(allowed []specs.LinuxDeviceCgroup, deny specs.LinuxDeviceCgroup) []specs.LinuxDeviceCgroup {
	out := allowed[:0]
	for _, a := range allowed {
		if a.Type == deny.Type && sameDeviceNumber(a.Major, deny.Major) && sameDeviceNumber(a.Minor, deny.Minor) {
			continue
		}
		out = append(out, a)
	}
	return out
}

func sameDeviceNumber(a, b *int64) bool {
	if a == nil || *a < 0 {
		return b == nil || *b < 0
	}
	return b != nil && *a == *b
}

// deviceAllowPath names the devices of one rule the way DeviceAllow does:
// "/dev/char/1:3" for one device, "char-pts" for a major (by its name in
// /proc/devices), "char-*" for every one.
func deviceAllowPath(kind string, d specs.LinuxDeviceCgroup, majorName func(kind string, major int64) (string, bool)) (string, bool) {
	switch {
	case d.Major == nil || *d.Major < 0:
		return kind + "-*", true
	case d.Minor == nil || *d.Minor < 0:
		name, ok := majorName(kind, *d.Major)
		if !ok {
			return "", false
		}
		return kind + "-" + name, true
	default:
		return fmt.Sprintf("/dev/%s/%d:%d", kind, *d.Major, *d.Minor), true
	}
}

// procDevices looks a major number up in /proc/devices.
func procDevices(kind string, major int64) (string, bool) {
	f, err := os.Open("/proc/devices")
	if err != nil {
		return "", false
	}
	defer f.Close()
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch line {
		case "Character devices:":
			section = "char"
			continue
		case "Block devices:":
			section = "block"
			continue
		}
		num, name, ok := strings.Cut(line, " ")
		if !ok || section != kind {
			continue
		}
		if n, err := strconv.ParseInt(num, 10, 64); err == nil && n == major {
			return strings.TrimSpace(name), true
		}
	}
	return "", false
}
