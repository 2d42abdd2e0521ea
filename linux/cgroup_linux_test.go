package linux

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestCgroupV2ResourcesKeepDevices: without the device rules no eBPF filter
// is attached on cgroup v2 and every device is allowed.
func TestCgroupV2ResourcesKeepDevices(t *testing.T) {
	limit := int64(1 << 20)
	in := &specs.LinuxResources{
		Memory:  &specs.LinuxMemory{Limit: &limit},
		Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}, {Allow: true, Type: "c", Access: "rwm"}},
	}
	got := v2Resources(in)
	if len(got.Devices) != 2 || got.Devices[0].Allow || got.Devices[1].Type != "c" {
		t.Fatalf("device rules lost: %+v", got.Devices)
	}
	// ctr's default deny-all rule has no type and no numbers; the filter
	// builder needs "a" and -1 spelled out (a nil major crashed it).
	if d := got.Devices[0]; d.Type != "a" || d.Major == nil || *d.Major != -1 || d.Minor == nil || *d.Minor != -1 {
		t.Fatalf("defaults not spelled out: %+v", d)
	}
	if in.Devices[0].Type != "" || in.Devices[0].Major != nil {
		t.Fatalf("the spec's rules were changed in place: %+v", in.Devices[0])
	}
	if got.Memory == nil || got.Memory.Max == nil || *got.Memory.Max != limit {
		t.Fatalf("memory lost: %+v", got.Memory)
	}
}

// TestCgroupV2DeviceFilterBuilds runs the eBPF filter builder on rules as
// ctr and CRI write them (deny all without type or numbers, then allows).
func TestCgroupV2DeviceFilterBuilds(t *testing.T) {
	n := func(v int64) *int64 { return &v }
	rules := []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		{Allow: true, Type: "c", Major: n(1), Minor: n(3), Access: "rwm"},
		{Allow: true, Type: "c", Major: n(136), Access: "rwm"},
		{Allow: true, Type: "c", Major: n(5), Minor: n(2), Access: "rwm"},
	}
	if _, _, err := cgroup2.DeviceFilter(normalizeDeviceRules(rules)); err != nil {
		t.Fatalf("DeviceFilter: %v", err)
	}
}

// requireCgroupV1 skips unless the test may make cgroups on a v1 host.
func requireCgroupV1(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if cgroups.Mode() == cgroups.Unified {
		t.Skip("a cgroup v1 case")
	}
}

// A create that fails half way leaves no directory in any hierarchy: the
// library stops at the first failing controller and keeps what it made.
func TestCgroupV1FailedCreateLeavesNothing(t *testing.T) {
	requireCgroupV1(t)
	path := "/minitest-unit/fail-" + strconv.Itoa(os.Getpid())
	t.Cleanup(func() {
		for _, d := range []string{path, "/minitest-unit"} {
			dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/*", d))
			for _, dir := range dirs {
				_ = os.Remove(dir)
			}
		}
	})
	// More realtime runtime than the root cgroup has: the kernel refuses.
	rt := int64(10_000_000)
	_, err := newCgroupfs(path, &specs.LinuxResources{CPU: &specs.LinuxCPU{RealtimeRuntime: &rt}})
	if err == nil {
		t.Fatal("create with an impossible realtime runtime succeeded")
	}
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/*", path))
	if len(dirs) > 0 {
		t.Fatalf("left behind after %v: %v", err, dirs)
	}
}

// On a host whose block layer runs BFQ, v1 has blkio.bfq.weight and no
// blkio.weight; the weight goes there, as runc writes it.
func TestCgroupV1BlkioWeight(t *testing.T) {
	requireCgroupV1(t)
	path := "/minitest-unit-bfq-" + strconv.Itoa(os.Getpid())
	// Which weight file a child cgroup has: CFQ's or BFQ's, or none.
	probe := filepath.Join("/sys/fs/cgroup/blkio", path+"-probe")
	if err := os.Mkdir(probe, 0o755); err != nil {
		t.Skipf("no blkio hierarchy: %v", err)
	}
	file := ""
	for _, f := range []string{"blkio.weight", "blkio.bfq.weight"} {
		if _, err := os.Stat(filepath.Join(probe, f)); err == nil && file == "" {
			file = f
		}
	}
	_ = os.Remove(probe)
	if file == "" {
		t.Skip("this host's blkio controller has no weight file")
	}
	t.Cleanup(func() {
		dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/*", path))
		for _, d := range dirs {
			if err := os.Remove(d); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	weight := uint16(321)
	cg, err := newCgroupfs(path, &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{Weight: &weight}})
	if err != nil {
		t.Fatalf("create with blkio weight (%s): %v", file, err)
	}
	dir := filepath.Join("/sys/fs/cgroup/blkio", path)
	data, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	// BFQ prints "default 321".
	if f := strings.Fields(string(data)); len(f) == 0 || f[len(f)-1] != "321" {
		t.Fatalf("%s = %q; want 321", file, data)
	}
	weight = 123
	if err := cg.Update(&specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{Weight: &weight}}); err != nil {
		t.Fatalf("update blkio weight: %v", err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, file)); !strings.Contains(string(data), "123") {
		t.Fatalf("after update %s = %q; want 123", file, data)
	}
}

// Standard devices follow a spec's own rules (as runc adds its own), and a
// spec without rules, which allows every device, is left alone.
func TestWithStandardDevices(t *testing.T) {
	// As runc: rules start from "deny all", so a spec without any gets
	// the standard devices and nothing else.
	got := withStandardDevices(&specs.LinuxResources{})
	if len(got.Devices) != 1+len(standardDevices()) || got.Devices[0].Allow || !isAllDevices(got.Devices[0]) {
		t.Fatalf("a spec without device rules got %v; want deny all, then the standard devices", got.Devices)
	}
	denyAll := []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
	in := &specs.LinuxResources{Devices: denyAll}
	got = withStandardDevices(in)
	if len(in.Devices) != 1 {
		t.Fatalf("the spec's rules were changed in place: %v", in.Devices)
	}
	if got.Devices[0].Allow || len(got.Devices) != 1+len(standardDevices()) {
		t.Fatalf("want the spec's rule first, then the standard ones: %v", got.Devices)
	}
	null := false
	for _, d := range got.Devices[1:] {
		if d.Allow && d.Type == "c" && d.Major != nil && *d.Major == 1 && d.Minor != nil && *d.Minor == 3 && d.Access == "rwm" {
			null = true
		}
	}
	if !null {
		t.Fatalf("/dev/null (c 1:3 rwm) is not among the standard devices: %v", got.Devices)
	}
}

// Only controllers mounted under /sys/fs/cgroup are used; every one this
// host mounts there is.
func TestMountedHierarchies(t *testing.T) {
	if cgroups.Mode() == cgroups.Unified {
		t.Skip("a cgroup v1 case")
	}
	subs, err := mountedHierarchies()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, s := range subs {
		got[string(s.Name())] = true
		if p, ok := s.(interface{ Path(string) string }); ok && !isCgroupMount(p.Path("/")) {
			t.Errorf("%s is not mounted at %s", s.Name(), p.Path("/"))
		}
	}
	for _, name := range []string{"memory", "pids", "freezer", "cpu"} {
		if isCgroupMount(filepath.Join("/sys/fs/cgroup", name)) && !got[name] {
			t.Errorf("mounted controller %s left out: %v", name, got)
		}
	}
	if isCgroupMount("/sys/fs/cgroup") {
		t.Error("the tmpfs holding the hierarchies counts as a cgroup mount")
	}
	if isCgroupMount(hybridUnifiedRoot) && !got["unified"] {
		t.Errorf("hybrid host: the unified hierarchy is left out: %v", got)
	}
	// A directory that is no mount (the tmpfs itself) is not taken.
	if isCgroupMount(t.TempDir()) {
		t.Error("a plain directory counts as a cgroup mount")
	}
}

// An unlimited swap stays unlimited on v2 (ToResources subtracted the
// limit from it), and a limited one becomes swap alone.
func TestCgroupV2Swap(t *testing.T) {
	n := func(v int64) *int64 { return &v }
	tests := []struct {
		limit, swap int64
		want        int64
	}{
		{-1, -1, -1},
		{64 << 20, -1, -1},
		{64 << 20, 96 << 20, 32 << 20},
	}
	for _, tt := range tests {
		got := v2Resources(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: n(tt.limit), Swap: n(tt.swap)}})
		if got.Memory.Swap == nil || *got.Memory.Swap != tt.want {
			t.Errorf("limit %d swap %d: memory.swap.max %v; want %d", tt.limit, tt.swap, got.Memory.Swap, tt.want)
		}
	}
}

// Swap includes memory: asking for swap without a memory limit is refused
// before anything is made (runc refuses it too).
func TestNewCgroupSwapWithoutLimit(t *testing.T) {
	swap := int64(1 << 20)
	path := "/minitest-unit-swap-" + strconv.Itoa(os.Getpid())
	_, err := newCgroup(cgroupPlacement{Path: path}, &specs.LinuxResources{Memory: &specs.LinuxMemory{Swap: &swap}}, "")
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("got %v; want invalid argument", err)
	}
	if dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/*", path)); len(dirs) > 0 {
		t.Fatalf("made %v", dirs)
	}
}

// An update of the memory and memory+swap limits writes them in the order
// that keeps limit <= memory+swap after each write.
func TestMemoryInOrder(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	const mib = 1 << 20
	tests := []struct {
		name        string
		limit, swap *int64
		current     int64 // memory+swap now; -1 unlimited
		swapFirst   bool
		oneStep     bool
	}{
		{name: "raise past memsw", limit: i64(128 * mib), swap: i64(128 * mib), current: 64 * mib, swapFirst: true},
		{name: "lower", limit: i64(64 * mib), swap: i64(64 * mib), current: 128 * mib},
		{name: "raise within memsw", limit: i64(100 * mib), swap: i64(256 * mib), current: 128 * mib},
		{name: "memsw unlimited now", limit: i64(128 * mib), swap: i64(256 * mib), current: -1},
		{name: "to unlimited memsw", limit: i64(128 * mib), swap: i64(-1), current: 64 * mib, swapFirst: true},
		{name: "limit only", limit: i64(128 * mib), oneStep: true},
		{name: "swap only", swap: i64(128 * mib), oneStep: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			shares := uint64(512)
			r := &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: tt.limit, Swap: tt.swap, Reservation: i64(mib)}, CPU: &specs.LinuxCPU{Shares: &shares}}
			steps, err := memoryInOrder(r, func() (int64, error) { return tt.current, nil })
			if err != nil {
				t.Fatal(err)
			}
			if tt.oneStep {
				if len(steps) != 1 || steps[0] != r {
					t.Fatalf("want the update as it is, got %d steps", len(steps))
				}
				return
			}
			if len(steps) != 2 {
				t.Fatalf("got %d steps, want 2", len(steps))
			}
			swapStep, limitStep := steps[0], steps[1]
			if !tt.swapFirst {
				swapStep, limitStep = steps[1], steps[0]
			}
			if m := swapStep.Memory; m.Swap == nil || *m.Swap != *tt.swap || m.Limit != nil || m.Reservation != nil {
				t.Errorf("memory+swap step: %+v", m)
			}
			if m := limitStep.Memory; m.Swap != nil || m.Limit == nil || *m.Limit != *tt.limit || m.Reservation == nil {
				t.Errorf("limit step: %+v", m)
			}
			// Everything else is written once, with the limit.
			if swapStep.CPU != nil || limitStep.CPU == nil {
				t.Errorf("cpu shares in the swap step: %v, in the limit step: %v", swapStep.CPU != nil, limitStep.CPU != nil)
			}
		})
	}
}

// Delete removes the cgroup in every hierarchy, with cgroups made below
// it; while a process is in it, it fails with EBUSY naming a directory.
func TestCgroupV1Delete(t *testing.T) {
	requireCgroupV1(t)
	path := "/minitest-unit/delete-" + strconv.Itoa(os.Getpid())
	cg, err := newCgroupfs(path, &specs.LinuxResources{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cg.Delete()
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*/minitest-unit")
		for _, d := range append(dirs, "/sys/fs/cgroup/unified/minitest-unit") {
			_ = os.Remove(d)
		}
	})
	for _, sub := range []string{"memory", "pids"} {
		if err := os.MkdirAll(filepath.Join("/sys/fs/cgroup", sub, path, "child", "grandchild"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sleeper := exec.Command("/bin/sleep", "100")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer sleeper.Wait()
	defer sleeper.Process.Kill()
	if err := cg.Add(sleeper.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if err := cg.Delete(); !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Delete with a process inside: %v, want EBUSY naming %s", err, path)
	}
	sleeper.Process.Kill()
	sleeper.Wait()
	var err2 error
	for i := 0; i < 100; i++ {
		if err2 = cg.Delete(); err2 == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err2 != nil {
		t.Fatal(err2)
	}
	if left, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/*", path)); len(left) > 0 {
		t.Fatalf("left after Delete: %v", left)
	}
}
