package initproc

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const identityChildEnv = "MINISHIM_TEST_IDENTITY_CHILD"

func TestIdentityCapabilityFromName(t *testing.T) {
	for _, tc := range []struct {
		name string
		want int
		ok   bool
	}{
		{"CAP_CHOWN", 0, true},
		{"CAP_NET_BIND_SERVICE", 10, true},
		{"CAP_SYS_ADMIN", 21, true},
		{"CAP_SYS_RESOURCE", 24, true},
		{"CAP_SETFCAP", 31, true},
		{"CAP_MAC_OVERRIDE", 32, true},
		{"CAP_AUDIT_READ", 37, true},
		{"CAP_BPF", 39, true},
		{"CAP_CHECKPOINT_RESTORE", 40, true},
		{"CAP_NOPE", 0, false},
		{"sys_admin", 0, false},
		{"", 0, false},
	} {
		got, err := CapabilityFromName(tc.name)
		if tc.ok && (err != nil || got != tc.want) {
			t.Errorf("CapabilityFromName(%q) = %d, %v; want %d", tc.name, got, err, tc.want)
		}
		if !tc.ok && (!errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.name))) {
			t.Errorf("CapabilityFromName(%q) = %d, %v; want invalid argument naming it", tc.name, got, err)
		}
	}
	if n := len(capabilityNames); n != 41 {
		t.Errorf("capability table has %d entries; want 41", n)
	}
}

func TestIdentityUnknownCapability(t *testing.T) {
	err := finalizeIdentity(&specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_CHOWN", "CAP_BOGUS"}}})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), `"CAP_BOGUS"`) {
		t.Fatalf("err = %v; want invalid argument naming CAP_BOGUS", err)
	}
}

// TestIdentityChild applies the process JSON in its env and then execs
// busybox to print what the kernel says about the result.
func TestIdentityChild(t *testing.T) {
	raw := os.Getenv(identityChildEnv)
	if raw == "" {
		t.Skip("helper for TestIdentityFinalize")
	}
	var p specs.Process
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		fmt.Println("ERROR:", err)
		os.Exit(3)
	}
	if err := finalizeIdentity(&p); err != nil {
		fmt.Println("ERROR:", err)
		os.Exit(3)
	}
	err := syscall.Exec("/bin/busybox", []string{"sh", "-c", "grep -E '^(Uid|Gid|Groups|Cap...|NoNewPrivs):' /proc/self/status; echo Umask: $(umask)"}, []string{"PATH=/bin"})
	fmt.Println("ERROR:", err)
	os.Exit(3)
}

func runIdentityChild(t *testing.T, p specs.Process) (map[string]string, string, error) {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	out, err := runLinuxTestChild(t, "TestIdentityChild", []string{identityChildEnv + "=" + string(b)}, nil)
	fields := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return fields, out, err
}

func TestIdentityFinalize(t *testing.T) {
	requireRoot(t)
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs /bin/busybox")
	}
	umask := uint32(0o027)
	nbs := []string{"CAP_NET_BIND_SERVICE"}
	fields, out, err := runIdentityChild(t, specs.Process{
		User:            specs.User{UID: 1000, GID: 1001, AdditionalGids: []uint32{2000, 2001}, Umask: &umask},
		NoNewPrivileges: true,
		Capabilities: &specs.LinuxCapabilities{
			Bounding:    []string{"CAP_NET_BIND_SERVICE", "CAP_CHOWN"},
			Effective:   nbs,
			Permitted:   nbs,
			Inheritable: nbs,
			Ambient:     nbs,
		},
	})
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	// After execve as a non-root user only the ambient set survives.
	for k, want := range map[string]string{
		"Uid":        "1000 1000 1000 1000",
		"Gid":        "1001 1001 1001 1001",
		"Groups":     "2000 2001",
		"CapInh":     "0000000000000400",
		"CapPrm":     "0000000000000400",
		"CapEff":     "0000000000000400",
		"CapBnd":     "0000000000000401",
		"CapAmb":     "0000000000000400",
		"NoNewPrivs": "1",
		"Umask":      "0027",
	} {
		if fields[k] != want {
			t.Errorf("%s = %q; want %q", k, fields[k], want)
		}
	}
	if t.Failed() {
		t.Logf("child output:\n%s", out)
	}
}

func TestIdentityRootKeepsCapsAndDropsGroups(t *testing.T) {
	requireRoot(t)
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs /bin/busybox")
	}
	fields, out, err := runIdentityChild(t, specs.Process{})
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if fields["Uid"] != "0 0 0 0" || fields["Groups"] != "" || fields["CapEff"] == "0000000000000000" || fields["NoNewPrivs"] != "0" {
		t.Fatalf("unexpected identity:\n%s", out)
	}
}

func TestIdentityMissingPermittedCap(t *testing.T) {
	requireRoot(t)
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(status), "CapBnd:\t000001fffeffffff") {
		t.Skip("needs a runtime lacking only CAP_SYS_RESOURCE")
	}
	caps := []string{"CAP_SYS_RESOURCE"}
	_, out, err := runIdentityChild(t, specs.Process{
		Capabilities: &specs.LinuxCapabilities{Bounding: caps, Permitted: caps, Effective: caps},
	})
	if err == nil || !strings.Contains(out, "ERROR: capset: operation not permitted (the runtime itself lacks CAP_SYS_RESOURCE)") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
