package linux

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Every field not enforced yet is refused, by name, with Unimplemented:
// never skipped.
func TestUnenforcedFieldsRefused(t *testing.T) {
	tests := []struct {
		field string
		set   func(*specs.Spec)
	}{
		{"linux.mountLabel", func(s *specs.Spec) { s.Linux.MountLabel = "system_u:object_r:container_file_t:s0" }},
		{"linux.intelRdt", func(s *specs.Spec) { s.Linux.IntelRdt = &specs.LinuxIntelRdt{ClosID: "c"} }},
		{"linux.memoryPolicy", func(s *specs.Spec) { s.Linux.MemoryPolicy = &specs.LinuxMemoryPolicy{Mode: specs.MpolBind} }},
		{"linux.personality", func(s *specs.Spec) { s.Linux.Personality = &specs.LinuxPersonality{Domain: specs.PerLinux32} }},
		{"linux.netDevices", func(s *specs.Spec) { s.Linux.NetDevices = map[string]specs.LinuxNetDevice{"eth1": {}} }},
		{"linux.timeOffsets", func(s *specs.Spec) { s.Linux.TimeOffsets = map[string]specs.LinuxTimeOffset{"monotonic": {Secs: 1}} }},
		{"linux.uidMappings", func(s *specs.Spec) { s.Linux.UIDMappings = []specs.LinuxIDMapping{{Size: 1}} }},
		{"linux.gidMappings", func(s *specs.Spec) { s.Linux.GIDMappings = []specs.LinuxIDMapping{{Size: 1}} }},
		{"mounts[0] (/m): uidMappings", func(s *specs.Spec) {
			s.Mounts = []specs.Mount{{Destination: "/m", UIDMappings: []specs.LinuxIDMapping{{Size: 1}}}}
		}},
		{"process.apparmorProfile", func(s *specs.Spec) { s.Process.ApparmorProfile = "p" }},
		{"process.selinuxLabel", func(s *specs.Spec) { s.Process.SelinuxLabel = "l" }},
		{"process.scheduler", func(s *specs.Spec) { s.Process.Scheduler = &specs.Scheduler{Policy: specs.SchedBatch} }},
		{"process.ioPriority", func(s *specs.Spec) { s.Process.IOPriority = &specs.LinuxIOPriority{Class: specs.IOPRIO_CLASS_IDLE} }},
		{"process.execCPUAffinity", func(s *specs.Spec) { s.Process.ExecCPUAffinity = &specs.CPUAffinity{Final: "0"} }},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			s := &specs.Spec{Process: &specs.Process{Args: []string{"/bin/true"}}, Linux: &specs.Linux{}}
			if err := checkEnforced(s); err != nil {
				t.Fatalf("empty spec refused: %v", err)
			}
			tt.set(s)
			err := checkEnforced(s)
			if !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("checkEnforced = %v; want Unimplemented naming %s", err, tt.field)
			}
			if strings.HasPrefix(tt.field, "process.") {
				err := ValidateExecProcess("e1", s.Process)
				if !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "exec e1: "+tt.field) {
					t.Fatalf("ValidateExecProcess = %v; want Unimplemented naming %s", err, tt.field)
				}
			}
		})
	}
}
