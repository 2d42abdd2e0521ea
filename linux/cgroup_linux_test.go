package linux

import (
	"testing"

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
