package linux

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
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
	weight := uint16(321)
	cg, err := newCgroupfs(path, &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{Weight: &weight}})
	if err != nil {
		t.Fatalf("create with blkio weight: %v", err)
	}
	t.Cleanup(func() {
		if err := cg.Delete(); err != nil {
			t.Errorf("delete: %v", err)
		}
	})
	dir := filepath.Join("/sys/fs/cgroup/blkio", path)
	file := "blkio.weight"
	if _, err := os.Stat(filepath.Join(dir, file)); err != nil {
		file = "blkio.bfq.weight"
	}
	data, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Skipf("no weight file in this host's blkio controller: %v", err)
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
	none := &specs.LinuxResources{}
	if got := withStandardDevices(none); got != none || len(got.Devices) != 0 {
		t.Fatalf("a spec without device rules got %v", got.Devices)
	}
	denyAll := []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
	in := &specs.LinuxResources{Devices: denyAll}
	got := withStandardDevices(in)
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
}
