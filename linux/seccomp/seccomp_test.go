package seccomp

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// The tests load filters in a child: the test binary run again with
// childEnv naming a file that holds the program and the getpgid arguments
// to try. A filter cannot be taken off a process, so none is ever loaded
// into the test process itself.
const childEnv = "MINI_SECCOMP_TEST_CHILD"

type childJob struct {
	Prog  *Program `json:"prog"`
	Tries []uint64 `json:"tries"`
	// Calls are system call numbers to make without arguments, after Tries.
	Calls []uint64 `json:"calls,omitempty"`
}

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		os.Exit(runChild(path))
	}
	os.Exit(m.Run())
}

// runChild loads the program and prints, per try, the errno getpgid(arg)
// returned (0 for none).
func runChild(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var job childJob
	if err := json.Unmarshal(data, &job); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fd, err := Load(job.Prog)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	var out []string
	for _, arg := range job.Tries {
		_, _, errno := unix.Syscall(unix.SYS_GETPGID, uintptr(arg), 0, 0)
		out = append(out, strconv.Itoa(int(errno)))
	}
	for _, nr := range job.Calls {
		_, _, errno := unix.Syscall(uintptr(nr), 0, 0, 0)
		out = append(out, strconv.Itoa(int(errno)))
	}
	fmt.Println(strings.Join(out, " "), "fd", fd >= 0)
	return 0
}

// loadAndTry runs a child that loads prog and calls getpgid with each
// arg; it returns what the child printed and how it ended.
func loadAndTry(t *testing.T, prog *Program, tries ...uint64) (string, error) {
	t.Helper()
	return runJob(t, childJob{Prog: prog, Tries: tries})
}

func runJob(t *testing.T, job childJob) (string, error) {
	t.Helper()
	data, err := json.Marshal(job)
	if err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/job.json"
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+path)
	out, err := cmd.Output()
	return strings.TrimSpace(string(out)), err
}

func ptr[T any](v T) *T { return &v }

// denyGetpgid is a profile allowing everything but getpgid calls matching
// args, which get action (ERRNO 42 unless the action needs no errno).
func denyGetpgid(action specs.LinuxSeccompAction, args ...specs.LinuxSeccompArg) *specs.LinuxSeccomp {
	sc := specs.LinuxSyscall{Names: []string{"getpgid"}, Action: action, Args: args}
	if action == specs.ActErrno {
		sc.ErrnoRet = ptr(uint(42))
	}
	return &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{sc}}
}

func TestCompileAndLoad(t *testing.T) {
	arg := func(index uint, op specs.LinuxSeccompOperator, v ...uint64) specs.LinuxSeccompArg {
		a := specs.LinuxSeccompArg{Index: index, Op: op, Value: v[0]}
		if len(v) > 1 {
			a.ValueTwo = v[1]
		}
		return a
	}
	esrch := strconv.Itoa(int(unix.ESRCH))
	tests := []struct {
		name    string
		profile *specs.LinuxSeccomp
		tries   []uint64
		want    string // the child's output
		signal  syscall.Signal
	}{
		{name: "errno with errnoRet", profile: denyGetpgid(specs.ActErrno), tries: []uint64{0}, want: "42 fd false"},
		{
			name: "errno without errnoRet is EPERM",
			profile: &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
				{Names: []string{"getpgid"}, Action: specs.ActErrno},
			}},
			tries: []uint64{0}, want: "1 fd false",
		},
		{name: "arg equal", profile: denyGetpgid(specs.ActErrno, arg(0, specs.OpEqualTo, 99999)), tries: []uint64{0, 99999}, want: "0 42 fd false"},
		{name: "arg not equal", profile: denyGetpgid(specs.ActErrno, arg(0, specs.OpNotEqual, 0)), tries: []uint64{0, 99999}, want: "0 42 fd false"},
		{name: "arg less, greater", profile: denyGetpgid(specs.ActErrno, arg(0, specs.OpGreaterThan, 99990), arg(1, specs.OpLessThan, 1)), tries: []uint64{0, 99990, 99991}, want: "0 " + esrch + " 42 fd false"},
		{name: "arg le, ge", profile: denyGetpgid(specs.ActErrno, arg(0, specs.OpGreaterEqual, 99990), arg(1, specs.OpLessEqual, 0)), tries: []uint64{99989, 99990}, want: esrch + " 42 fd false"},
		{name: "masked equal", profile: denyGetpgid(specs.ActErrno, arg(0, specs.OpMaskedEqual, 0xff, 0x10)), tries: []uint64{0x110, 0x111}, want: "42 " + esrch + " fd false"},
		{
			// Two conditions on one argument cannot both hold: either does.
			name:    "same index is any of",
			profile: denyGetpgid(specs.ActErrno, arg(0, specs.OpEqualTo, 99991), arg(0, specs.OpEqualTo, 99992)),
			tries:   []uint64{99991, 99992, 99993}, want: "42 42 " + esrch + " fd false",
		},
		{name: "log allows", profile: denyGetpgid(specs.ActLog), tries: []uint64{0}, want: "0 fd false"},
		{
			name: "default errno with defaultErrnoRet",
			profile: &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
				{Names: []string{"getpgid"}, Action: specs.ActErrno, ErrnoRet: ptr(uint(7))},
				{Names: []string{"no_such_call_anywhere"}, Action: specs.ActErrno},
			}},
			tries: []uint64{0}, want: "7 fd false",
		},
		{name: "kill process", profile: denyGetpgid(specs.ActKillProcess), tries: []uint64{0}, signal: unix.SIGSYS},
		{
			name: "flags",
			profile: func() *specs.LinuxSeccomp {
				p := denyGetpgid(specs.ActErrno)
				p.Flags = []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog, specs.LinuxSeccompFlagSpecAllow, "SECCOMP_FILTER_FLAG_TSYNC"}
				return p
			}(),
			tries: []uint64{0}, want: "42 fd false",
		},
		{
			name: "notify with wait killable",
			profile: func() *specs.LinuxSeccomp {
				p := denyGetpgid(specs.ActNotify, arg(0, specs.OpEqualTo, 99999))
				p.ListenerPath = "/run/nowhere.sock"
				p.Flags = []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagWaitKillableRecv}
				return p
			}(),
			tries: []uint64{0}, want: "0 fd true",
		},
		{
			name: "notify gives a listener fd",
			profile: func() *specs.LinuxSeccomp {
				p := denyGetpgid(specs.ActNotify, arg(0, specs.OpEqualTo, 99999))
				p.ListenerPath = "/run/nowhere.sock"
				return p
			}(),
			tries: []uint64{0}, want: "0 fd true",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prog, err := Compile(tt.profile)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			out, err := loadAndTry(t, prog, tt.tries...)
			if tt.signal != 0 {
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != tt.signal {
					t.Fatalf("child ended with %v (output %q); want killed by %v", err, out, tt.signal)
				}
				return
			}
			if err != nil {
				t.Fatalf("child: %v (output %q)", err, out)
			}
			if out != tt.want {
				t.Errorf("child printed %q; want %q", out, tt.want)
			}
		})
	}
}

func TestCompileRefuses(t *testing.T) {
	tests := []struct {
		name    string
		profile *specs.LinuxSeccomp
		class   func(error) bool
		want    string
	}{
		{"bad default action", &specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_NOPE"}, errdefs.IsInvalidArgument, "linux.seccomp.defaultAction"},
		{"notify default", &specs.LinuxSeccomp{DefaultAction: specs.ActNotify}, errdefs.IsInvalidArgument, "cannot be the default"},
		{"bad flag", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Flags: []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_NEW_LISTENER"}}, errdefs.IsInvalidArgument, "flags[0]"},
		{"bad arch", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{"SCMP_ARCH_VAX"}}, errdefs.IsInvalidArgument, "architectures[0]"},
		{"bad action", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: "x"}}}, errdefs.IsInvalidArgument, "syscalls[0].action"},
		{"errno out of range", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno, ErrnoRet: ptr(uint(5000))}}}, errdefs.IsInvalidArgument, "out of range"},
		{"bad op", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Op: "SCMP_CMP_ABOUT"}}}}}, errdefs.IsInvalidArgument, "syscalls[0].args[0].op"},
		{"bad index", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 6, Op: specs.OpEqualTo}}}}}, errdefs.IsInvalidArgument, "index 6"},
		{"notify without listener", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"mkdir"}, Action: specs.ActNotify}}}, errdefs.IsInvalidArgument, "listenerPath"},
		{"notify on write", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, ListenerPath: "/x", Syscalls: []specs.LinuxSyscall{{Names: []string{"mkdir", "write"}, Action: specs.ActNotify}}}, errdefs.IsInvalidArgument, "write syscall"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(tt.profile)
			if err == nil || !tt.class(err) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Compile = %v; want class match and %q", err, tt.want)
			}
		})
	}
}

func TestCacheCompilesOnce(t *testing.T) {
	var c Cache
	a, err := c.Compile(denyGetpgid(specs.ActErrno))
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Compile(denyGetpgid(specs.ActErrno))
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Error("the same profile was compiled twice")
	}
	d, err := c.Compile(denyGetpgid(specs.ActLog))
	if err != nil {
		t.Fatal(err)
	}
	if d == a {
		t.Error("a different profile came from the cache")
	}
	if _, err := c.Compile(&specs.LinuxSeccomp{DefaultAction: "bad"}); err == nil {
		t.Error("a bad profile compiled")
	}
}

// As runc: a profile naming no flags gets SPEC_ALLOW (where the kernel has
// it); an empty list or named flags get exactly what they name.
func TestCompileFlags(t *testing.T) {
	tests := []struct {
		name  string
		flags []specs.LinuxSeccompFlag
		want  uint
	}{
		{"absent", nil, unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW},
		{"empty", []specs.LinuxSeccompFlag{}, 0},
		{"log", []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog}, unix.SECCOMP_FILTER_FLAG_LOG},
		{"tsync", []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_TSYNC"}, unix.SECCOMP_FILTER_FLAG_TSYNC},
		{"wait killable without a listener", []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagWaitKillableRecv}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := denyGetpgid(specs.ActErrno)
			p.Flags = tt.flags
			prog, err := Compile(p)
			if err != nil {
				t.Fatal(err)
			}
			if prog.Flags != tt.want {
				t.Errorf("flags = %#x; want %#x", prog.Flags, tt.want)
			}
		})
	}
}

// Programs go to disk for the other shims of the host, and a file that is
// not a program is compiled over.
func TestCacheOnDisk(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	first := &Cache{Dir: dir}
	a, err := first.Compile(denyGetpgid(specs.ActErrno))
	if err != nil {
		t.Fatal(err)
	}
	files, _ := os.ReadDir(dir)
	if len(files) != 1 {
		t.Fatalf("cache dir holds %d files, want 1", len(files))
	}
	second := &Cache{Dir: dir}
	b, err := second.Compile(denyGetpgid(specs.ActErrno))
	if err != nil {
		t.Fatal(err)
	}
	if a == b || string(a.Filter) != string(b.Filter) || a.Flags != b.Flags {
		t.Error("a second cache did not read the same program from disk")
	}
	path := filepath.Join(dir, files[0].Name())
	// What another shim may find instead, each of which it must compile
	// over: a spoilt file, and a well-formed program someone other than
	// root wrote (a planted allow-all would load into containers).
	allow, err := Compile(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow})
	if err != nil {
		t.Fatal(err)
	}
	planted, _ := json.Marshal(allow)
	for name, spoil := range map[string]func() error{
		"spoilt": func() error { return os.WriteFile(path, []byte(`{"filter":"AAAA"}`), 0o600) },
		"not root's": func() error {
			if err := os.WriteFile(path, planted, 0o600); err != nil {
				return err
			}
			return os.Chown(path, 1000, 1000)
		},
		"writable by others": func() error {
			if err := os.WriteFile(path, planted, 0o600); err != nil {
				return err
			}
			return os.Chmod(path, 0o666)
		},
	} {
		if err := spoil(); err != nil {
			t.Fatal(err)
		}
		c, err := (&Cache{Dir: dir}).Compile(denyGetpgid(specs.ActErrno))
		if err != nil || string(c.Filter) != string(a.Filter) {
			t.Fatalf("%s file: got another program (%v)", name, err)
		}
		// Mended: written again by root.
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil || st.Uid != 0 || st.Mode&0o077 != 0 {
			t.Fatalf("%s file not written again: %+v, %v", name, st, err)
		}
	}
	// A directory others may write to is no cache at all.
	open := t.TempDir()
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := (&Cache{Dir: open}).Compile(denyGetpgid(specs.ActErrno)); err != nil {
		t.Fatal(err)
	}
	if files, _ := os.ReadDir(open); len(files) != 0 {
		t.Errorf("a program was kept in a directory others may write to")
	}
}

// A call newer than every call the profile names gets ENOSYS, as on an
// older kernel, instead of the default action; one the profile could have
// named but did not still gets the default.
func TestENOSYSForCallsNewerThanTheProfile(t *testing.T) {
	native, err := libseccomp.GetNativeArch()
	if err != nil || native != libseccomp.ArchAMD64 {
		t.Skip("the call numbers below are x86-64's")
	}
	// Allow every call up to 330 but getpgid (121); default EPERM.
	var names []string
	for nr := 0; nr <= 330; nr++ {
		name, err := libseccomp.ScmpSyscall(nr).GetName()
		if err == nil && name != "getpgid" {
			names = append(names, name)
		}
	}
	profile := &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Syscalls:      []specs.LinuxSyscall{{Names: names, Action: specs.ActAllow}},
	}
	prog, err := Compile(profile)
	if err != nil {
		t.Fatal(err)
	}
	// getpgid: named by no rule, below the highest: EPERM. 440 and 450
	// (process_madvise, set_mempolicy_home_node): above it: ENOSYS.
	out, err := runJob(t, childJob{Prog: prog, Tries: []uint64{0}, Calls: []uint64{440, 450}})
	if err != nil {
		t.Fatalf("child: %v (output %q)", err, out)
	}
	want := fmt.Sprintf("%d %d %d fd false", unix.EPERM, unix.ENOSYS, unix.ENOSYS)
	if out != want {
		t.Errorf("child printed %q; want %q", out, want)
	}
	// With ENOSYS as the default there is nothing to add.
	enosys := uint(unix.ENOSYS)
	profile.DefaultErrnoRet = &enosys
	if needsENOSYSPrefix(profile) {
		t.Error("a prefix for a profile whose default is ENOSYS already")
	}
}
