package linux

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestResourcesValidate(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	u16 := func(v uint16) *uint16 { return &v }
	tests := []struct {
		name    string
		res     *specs.LinuxResources
		wantErr string
	}{
		{"nil", nil, ""},
		{"empty", &specs.LinuxResources{}, ""},
		{"memory unlimited", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(-1)}}, ""},
		{"memory limit", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(64 << 20)}}, ""},
		{"memory negative", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(-5)}}, "memory.limit -5"},
		{"swappiness", &specs.LinuxResources{Memory: &specs.LinuxMemory{Swappiness: u64(101)}}, "swappiness 101"},
		{"swap counts memory too", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(64 << 20), Swap: i64(96 << 20)}}, ""},
		{"swap below limit", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(64 << 20), Swap: i64(32 << 20)}}, "memory.swap 33554432 is below memory.limit"},
		{"cpu quota negative", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(-2)}}, "cpu.quota -2"},
		{"cpu period tiny", &specs.LinuxResources{CPU: &specs.LinuxCPU{Period: u64(10)}}, "cpu.period 10"},
		{"cpus online", &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0"}}, ""},
		{"cpus out of range", &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0-4095"}}, "is not online"},
		{"cpus garbage", &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "x"}}, "bad entry"},
		{"cpus reversed range", &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "3-1"}}, "bad range"},
		{"pids negative", &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(-3)}}, "pids.limit -3"},
		{"blkio weight", &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{Weight: u16(5)}}, "blockIO.weight 5"},
		{"device type", &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: true, Type: "x", Access: "rwm"}}}, `devices[0].type "x"`},
		{"device access", &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: true, Type: "c", Access: "rwz"}}}, `devices[0].access "rwz"`},
		{"device ok", &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}, {Allow: true, Type: "c", Access: "rw"}}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateResources(tt.res)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateResources: %v", err)
				}
				return
			}
			if err == nil || !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ValidateResources = %v; want invalid argument with %q", err, tt.wantErr)
			}
		})
	}
}
