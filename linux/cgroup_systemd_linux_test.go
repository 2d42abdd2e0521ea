package linux

import (
	"math"
	"reflect"
	"testing"

	"github.com/containerd/errdefs"
	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func propertyMap(props []sddbus.Property) map[string]any {
	m := make(map[string]any, len(props))
	for _, p := range props {
		m[p.Name] = p.Value.Value()
	}
	return m
}

func TestResourceProperties(t *testing.T) {
	n := func(v int64) *int64 { return &v }
	u := func(v uint64) *uint64 { return &v }
	weight := uint16(500)
	full := &specs.LinuxResources{
		Memory:  &specs.LinuxMemory{Limit: n(64 << 20), Reservation: n(32 << 20), Swap: n(96 << 20)},
		CPU:     &specs.LinuxCPU{Shares: u(1024), Quota: n(50000), Period: u(100000), Cpus: "0-1,9", Mems: "0"},
		Pids:    &specs.LinuxPids{Limit: n(64)},
		BlockIO: &specs.LinuxBlockIO{Weight: &weight},
	}
	tests := []struct {
		name    string
		r       *specs.LinuxResources
		unified bool
		want    map[string]any
	}{
		{"nothing", &specs.LinuxResources{}, false, map[string]any{}},
		{"v1", full, false, map[string]any{
			"MemoryLimit":        uint64(64 << 20),
			"CPUShares":          uint64(1024),
			"CPUQuotaPeriodUSec": uint64(100000),
			"CPUQuotaPerSecUSec": uint64(500000),
			"TasksMax":           uint64(64),
			"BlockIOWeight":      uint64(500),
		}},
		{"v2", full, true, map[string]any{
			"MemoryMax":          uint64(64 << 20),
			"MemoryLow":          uint64(32 << 20),
			"MemorySwapMax":      uint64(32 << 20),
			"CPUWeight":          uint64(100), // the default weight for the default shares
			"CPUQuotaPeriodUSec": uint64(100000),
			"CPUQuotaPerSecUSec": uint64(500000),
			"AllowedCPUs":        []byte{0x03, 0x02},
			"AllowedMemoryNodes": []byte{0x01},
			"TasksMax":           uint64(64),
			"IOWeight":           uint64(4950),
		}},
		{"no limit is infinity", &specs.LinuxResources{
			Memory: &specs.LinuxMemory{Limit: n(-1), Swap: n(-1)},
			CPU:    &specs.LinuxCPU{Quota: n(-1)},
			Pids:   &specs.LinuxPids{Limit: n(-1)},
		}, true, map[string]any{
			"MemoryMax":          uint64(math.MaxUint64),
			"MemorySwapMax":      uint64(math.MaxUint64),
			"CPUQuotaPerSecUSec": uint64(math.MaxUint64),
			"TasksMax":           uint64(math.MaxUint64),
		}},
		// systemd keeps quota in 1% steps; rounding up keeps the cgroup's
		// own cpu.max (written after) within the unit's.
		{"quota rounds up", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: n(12345), Period: u(100000)}}, false, map[string]any{
			"CPUQuotaPeriodUSec": uint64(100000),
			"CPUQuotaPerSecUSec": uint64(130000),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := propertyMap(resourceProperties(tt.r, tt.unified))
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("properties:\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestDeviceProperties(t *testing.T) {
	n := func(v int64) *int64 { return &v }
	names := func(kind string, major int64) (string, bool) {
		if kind == "char" && major == 136 {
			return "pts", true
		}
		return "", false
	}
	tests := []struct {
		name   string
		rules  []specs.LinuxDeviceCgroup
		policy string
		allow  []deviceAllow
	}{
		{"ctr's defaults: deny all, then allows", []specs.LinuxDeviceCgroup{
			{Allow: false, Access: "rwm"},
			{Allow: true, Type: "c", Major: n(1), Minor: n(3), Access: "rwm"},
			{Allow: true, Type: "c", Major: n(136), Access: "rwm"},
			{Allow: true, Type: "c", Major: n(250), Access: "rw"},
			{Allow: true, Type: "b", Access: "m"},
			{Allow: true, Type: "a", Major: n(7), Minor: n(0), Access: "r"},
		}, "strict", []deviceAllow{
			{"/dev/char/1:3", "rwm"},
			{"char-pts", "rwm"},
			// Major 250 has no name here: it cannot be said and stays out.
			{"block-*", "m"},
			{"/dev/char/7:0", "r"},
			{"/dev/block/7:0", "r"},
		}},
		{"a later deny takes an allow back", []specs.LinuxDeviceCgroup{
			{Allow: false, Type: "a", Access: "rwm"},
			{Allow: true, Type: "c", Major: n(1), Minor: n(3), Access: "rwm"},
			{Allow: false, Type: "c", Major: n(1), Minor: n(3), Access: "rwm"},
		}, "strict", []deviceAllow{}},
		{"allow all with an exception is left to the cgroup", []specs.LinuxDeviceCgroup{
			{Allow: true, Access: "rwm"},
			{Allow: false, Type: "b", Major: n(8), Minor: n(0), Access: "rwm"},
		}, "auto", []deviceAllow{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := propertyMap(deviceProperties(tt.rules, names))
			if got["DevicePolicy"] != tt.policy || !reflect.DeepEqual(got["DeviceAllow"], tt.allow) {
				t.Fatalf("got policy %v allow %v; want %s %v", got["DevicePolicy"], got["DeviceAllow"], tt.policy, tt.allow)
			}
		})
	}
	if props := deviceProperties(nil, names); props != nil {
		t.Fatalf("no rules: got %v; want no properties", props)
	}
}

// The device list goes over D-Bus as a(ss), the signature systemd's
// DeviceAllow has.
func TestDeviceAllowSignature(t *testing.T) {
	p := unitProperty("DeviceAllow", []deviceAllow{{"/dev/null", "rwm"}})
	if sig := p.Value.Signature().String(); sig != "a(ss)" {
		t.Fatalf("DeviceAllow signature %s; want a(ss)", sig)
	}
}

func TestProcDevicesFindsMem(t *testing.T) {
	// Major 1 is "mem" on every Linux.
	if name, ok := procDevices("char", 1); !ok || name != "mem" {
		t.Fatalf("procDevices(char, 1) = %q, %v; want mem", name, ok)
	}
	if _, ok := procDevices("block", 1<<30); ok {
		t.Fatal("an unknown major was found")
	}
}

func TestSupportedProperties(t *testing.T) {
	props := []sddbus.Property{
		unitProperty("MemoryMax", uint64(1)),
		unitProperty("CPUQuotaPeriodUSec", uint64(100000)),
		unitProperty("AllowedCPUs", []byte{1}),
	}
	names := func(ps []sddbus.Property) (out []string) {
		for _, p := range ps {
			out = append(out, p.Name)
		}
		return out
	}
	tests := []struct {
		version int
		want    []string
	}{
		{0, []string{"MemoryMax", "CPUQuotaPeriodUSec", "AllowedCPUs"}},
		{237, []string{"MemoryMax"}},
		{243, []string{"MemoryMax", "CPUQuotaPeriodUSec"}},
		{252, []string{"MemoryMax", "CPUQuotaPeriodUSec", "AllowedCPUs"}},
	}
	for _, tt := range tests {
		if got := names(supportedProperties(props, tt.version)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("systemd %d: %v; want %v", tt.version, got, tt.want)
		}
	}
	if len(props) != 3 {
		t.Fatalf("the input was changed: %v", names(props))
	}
}

func TestParseSystemdVersion(t *testing.T) {
	for in, want := range map[string]int{`"252.38-1~deb12u1"`: 252, `"v255"`: 255, "249": 249, `""`: 0, "x": 0} {
		if got := parseSystemdVersion(in); got != want {
			t.Errorf("parseSystemdVersion(%s) = %d; want %d", in, got, want)
		}
	}
}

func TestClassifyDBusError(t *testing.T) {
	bad := classifyDBusError(dbus.Error{Name: "org.freedesktop.DBus.Error.InvalidArgs", Body: []any{"Unknown property"}})
	if !errdefs.IsInvalidArgument(bad) {
		t.Errorf("InvalidArgs: %v; want invalid argument", bad)
	}
	other := dbus.Error{Name: "org.freedesktop.systemd1.NoSuchUnit"}
	if got := classifyDBusError(other); errdefs.IsInvalidArgument(got) || errdefs.IsPermissionDenied(got) {
		t.Errorf("NoSuchUnit classified as %v", got)
	}
}
