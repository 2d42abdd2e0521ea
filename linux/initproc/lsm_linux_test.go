package initproc

import (
	"testing"

	"github.com/containerd/errdefs"
)

func TestWithMountLabel(t *testing.T) {
	tests := []struct{ data, label, want string }{
		{"", "", ""},
		{"mode=755", "", "mode=755"},
		{"", "system_u:object_r:container_file_t:s0:c1,c2", `context="system_u:object_r:container_file_t:s0:c1,c2"`},
		{"mode=755,size=65536k", "l", `mode=755,size=65536k,context="l"`},
	}
	for _, tt := range tests {
		if got := withMountLabel(tt.data, tt.label); got != tt.want {
			t.Errorf("withMountLabel(%q, %q) = %q; want %q", tt.data, tt.label, got, tt.want)
		}
	}
}

func TestSELinuxLabelWhereDisabled(t *testing.T) {
	if selinuxEnabled() {
		t.Skip("SELinux is enabled here")
	}
	if err := CheckSELinuxLabel("process.selinuxLabel", "system_u:system_r:container_t:s0"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("a label where SELinux is off: %v; want FailedPrecondition", err)
	}
	if err := CheckSELinuxLabel("process.selinuxLabel", ""); err != nil {
		t.Errorf("no label: %v", err)
	}
}
