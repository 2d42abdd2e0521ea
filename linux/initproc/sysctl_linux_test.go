package initproc

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const (
	sysctlChildEnv = "MINISHIM_TEST_SYSCTL_CHILD"
	rlimitChildEnv = "MINISHIM_TEST_RLIMIT_CHILD"
)

func TestSysctlPath(t *testing.T) {
	for _, tc := range []struct{ key, want string }{
		{"net.ipv4.ip_forward", "/proc/sys/net/ipv4/ip_forward"},
		{"kernel.domainname", "/proc/sys/kernel/domainname"},
		{"net/ipv4/conf/eth0.100/forwarding", "/proc/sys/net/ipv4/conf/eth0.100/forwarding"},
		{"", ""},
		{"../../etc/passwd", ""},
		{"net/../../../etc/passwd", ""},
	} {
		got, err := sysctlPath(tc.key)
		if tc.want == "" {
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("sysctlPath(%q) = %q, %v; want invalid argument", tc.key, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("sysctlPath(%q) = %q, %v; want %q", tc.key, got, err, tc.want)
		}
	}
}

func TestSysctlUnknownKey(t *testing.T) {
	err := applySysctl(map[string]string{"kernel.no_such_knob": "1"})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), `"kernel.no_such_knob"`) {
		t.Fatalf("err = %v; want invalid argument naming the key", err)
	}
}

// TestSysctlChild writes namespaced sysctls inside the fresh UTS and network
// namespaces its parent gave it.
func TestSysctlChild(t *testing.T) {
	if os.Getenv(sysctlChildEnv) == "" {
		t.Skip("helper for TestSysctlApply")
	}
	values := map[string]string{
		"kernel.domainname":            "sysctl.test",
		"net.ipv4.ip_forward":          "1",
		"net.ipv4.ip_local_port_range": "2000 3000",
	}
	for i := 0; i < 2; i++ { // a second pass finds the values in place
		if err := applySysctl(values); err != nil {
			fmt.Println("ERROR:", err)
			os.Exit(3)
		}
	}
	for k := range values {
		b, _ := os.ReadFile("/proc/sys/" + strings.ReplaceAll(k, ".", "/"))
		fmt.Printf("%s=%s\n", k, strings.Join(strings.Fields(string(b)), " "))
	}
	os.Exit(0)
}

func TestSysctlApply(t *testing.T) {
	requireRoot(t)
	out, err := runLinuxTestChild(t, "TestSysctlChild", []string{sysctlChildEnv + "=1"},
		&syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWUTS | unix.CLONE_NEWNET})
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	for _, want := range []string{"kernel.domainname=sysctl.test", "net.ipv4.ip_forward=1", "net.ipv4.ip_local_port_range=2000 3000"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %q in child output:\n%s", want, out)
		}
	}
}

// TestRlimitChild changes limits and the OOM score, which cannot be undone
// without CAP_SYS_RESOURCE, so it runs in its own process.
func TestRlimitChild(t *testing.T) {
	mode := os.Getenv(rlimitChildEnv)
	if mode == "" {
		t.Skip("helper for TestRlimit*")
	}
	var cur unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &cur); err != nil {
		fmt.Println("ERROR:", err)
		os.Exit(3)
	}
	switch mode {
	case "raise":
		err := applyRlimits([]specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: cur.Max + 1000, Hard: cur.Max + 1000}})
		fmt.Printf("ERROR: %v\nHARD=%d\n", err, cur.Max+1000)
	case "lower":
		err := applyRlimits([]specs.POSIXRlimit{
			{Type: "RLIMIT_NOFILE", Soft: 512, Hard: 1024},
			{Type: "RLIMIT_CORE", Soft: 0, Hard: 0},
		})
		var nofile, core unix.Rlimit
		_ = unix.Getrlimit(unix.RLIMIT_NOFILE, &nofile)
		_ = unix.Getrlimit(unix.RLIMIT_CORE, &core)
		fmt.Printf("ERROR: %v\nNOFILE=%d/%d\nCORE=%d/%d\n", err, nofile.Cur, nofile.Max, core.Cur, core.Max)
	case "oom":
		up, down := 500, -1000
		err1 := ApplyOOMScoreAdj(os.Getpid(), &up)
		b, _ := os.ReadFile("/proc/self/oom_score_adj")
		err2 := ApplyOOMScoreAdj(os.Getpid(), &down)
		fmt.Printf("UP=%v %s\nDOWN=%v\n", err1, strings.TrimSpace(string(b)), err2)
	}
	os.Exit(0)
}

func TestRlimitUnknownName(t *testing.T) {
	err := applyRlimits([]specs.POSIXRlimit{{Type: "RLIMIT_BOGUS", Soft: 1, Hard: 1}})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), `"RLIMIT_BOGUS"`) {
		t.Fatalf("err = %v; want invalid argument naming RLIMIT_BOGUS", err)
	}
	if err := ApplyOOMScoreAdj(os.Getpid(), nil); err != nil {
		t.Fatalf("ApplyOOMScoreAdj(os.Getpid(), nil) = %v", err)
	}
}

func TestRlimitRaiseHardWithoutCapability(t *testing.T) {
	requireRoot(t)
	if hasCap(t, 24) {
		t.Skip("CAP_SYS_RESOURCE is available here; raising would succeed")
	}
	out, err := runLinuxTestChild(t, "TestRlimitChild", []string{rlimitChildEnv + "=raise"}, nil)
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	hard := ""
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "HARD="); ok {
			hard = v
		}
	}
	want := fmt.Sprintf("ERROR: setrlimit RLIMIT_NOFILE (soft %s, hard %s): operation not permitted (raising a hard limit needs CAP_SYS_RESOURCE)\n", hard, hard)
	if !strings.Contains(out, want) {
		t.Fatalf("child output:\n%s\nwant %q", out, want)
	}
}

func TestRlimitLower(t *testing.T) {
	out, err := runLinuxTestChild(t, "TestRlimitChild", []string{rlimitChildEnv + "=lower"}, nil)
	if err != nil || !strings.Contains(out, "ERROR: <nil>\nNOFILE=512/1024\nCORE=0/0\n") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func TestRlimitOOMScoreAdj(t *testing.T) {
	requireRoot(t)
	if hasCap(t, 24) {
		t.Skip("CAP_SYS_RESOURCE is available here; lowering would succeed")
	}
	out, err := runLinuxTestChild(t, "TestRlimitChild", []string{rlimitChildEnv + "=oom"}, nil)
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(out, "UP=<nil> 500\n") ||
		!strings.Contains(out, "DOWN=set oom_score_adj to -1000: write /proc/") ||
		!strings.Contains(out, "/oom_score_adj: permission denied (lowering oom_score_adj needs CAP_SYS_RESOURCE; current value 500)\n") {
		t.Fatalf("child output:\n%s", out)
	}
}

// hasCap reports whether capability c is in this process's effective set.
func hasCap(t *testing.T, c int) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:\t"); ok {
			mask, err := strconv.ParseUint(v, 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return mask&(1<<c) != 0
		}
	}
	t.Fatal("no CapEff in /proc/self/status")
	return false
}
