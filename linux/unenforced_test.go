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
		{"linux.netDevices", func(s *specs.Spec) { s.Linux.NetDevices = map[string]specs.LinuxNetDevice{"eth1": {}} }},
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
		})
	}
}

// Without resctrl intelRdt fails as runc's does; with it, it is not
// implemented yet.
func TestIntelRdtRefused(t *testing.T) {
	s := &specs.Spec{Process: &specs.Process{Args: []string{"/bin/true"}}, Linux: &specs.Linux{IntelRdt: &specs.LinuxIntelRdt{ClosID: "c"}}}
	err := checkEnforced(s)
	if resctrlMounted() {
		if !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "linux.intelRdt") {
			t.Fatalf("with resctrl: %v; want Unimplemented naming linux.intelRdt", err)
		}
		return
	}
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "linux.intelRdt") {
		t.Fatalf("without resctrl: %v; want FailedPrecondition naming linux.intelRdt", err)
	}
}
