package nsexec

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/minishim/containerd-shim-mini-v2/linux/initproc"
	"github.com/minishim/containerd-shim-mini-v2/linux/seccomp"
)

// TestMain lets this test binary be a container process: the preamble
// (this package's constructor) has run when _MINI_SYNC_FD is set, and a
// process not set up in C goes on as the init binary's main does.
func TestMain(m *testing.M) {
	if os.Getenv("_MINI_SYNC_FD") != "" {
		initproc.Main()
	}
	os.Exit(m.Run())
}

// processOutcome is what a container process did: its stdout once it
// execve()d, or the error frame it sent instead.
type processOutcome struct {
	stdout   string
	errText  string
	errClass string
}

// runProcess brings up a process from cfg as the shim does for an exec in
// the shim's own namespaces (an empty bootstrap), set up by the preamble
// in C (viaC: the "process" line, then the plan) or by initproc in Go (the
// config frame), releases it and reads what it did.
func runProcess(t *testing.T, cfg initproc.Config, viaC bool) processOutcome {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "parent"), os.NewFile(uintptr(fds[1]), "child")
	defer ours.Close()
	var stdout bytes.Buffer
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = []string{"_MINI_SYNC_FD=3", "_MINI_HANDSHAKE=" + strconv.Itoa(initproc.Handshake)}
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stdout = &stdout
	cmd.Stderr = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	defer cmd.Wait() //nolint:errcheck // the outcome is read from the socket

	var boot, config []byte
	if viaC {
		plan, ok := ProcessPlan(&cfg, initproc.LastCap())
		if !ok {
			t.Fatalf("ProcessPlan refused %+v", cfg.Process)
		}
		boot, config = []byte("process\n"), frame(plan)
	} else {
		var b bytes.Buffer
		if err := initproc.WriteFrame(&b, cfg); err != nil {
			t.Fatal(err)
		}
		config = b.Bytes()
	}
	if _, err := ours.Write(frame(boot)); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 64)
	n, err := ours.Read(line)
	if err != nil || !strings.HasPrefix(string(line[:n]), "pid ") {
		t.Fatalf("preamble said %q (%v); want its pid line", line[:n], err)
	}
	if _, err := ours.Write(config); err != nil {
		t.Fatal(err)
	}
	var m initproc.Message
	var console *os.File
	for {
		fd, err := readFrameWithFd(ours, &m)
		if err != nil {
			t.Fatalf("wait for ready: %v (output %q)", err, stdout.String())
		}
		if m.Type != initproc.MsgConsole {
			break
		}
		if fd < 0 {
			t.Fatal("console message came without the pty master")
		}
		console = os.NewFile(uintptr(fd), "pty-master")
		defer console.Close()
	}
	if m.Type == initproc.MsgError {
		return processOutcome{errText: m.Error, errClass: m.Class}
	}
	if m.Type != initproc.MsgReady {
		t.Fatalf("got %q; want ready", m.Type)
	}
	if err := initproc.WriteFrame(ours, initproc.Message{Type: initproc.MsgStart}); err != nil {
		t.Fatal(err)
	}
	err = initproc.ReadFrame(ours, &m)
	switch {
	case errors.Is(err, io.EOF):
	case err != nil:
		t.Fatalf("wait for execve: %v", err)
	case m.Type == initproc.MsgError:
		return processOutcome{errText: m.Error, errClass: m.Class}
	default:
		t.Fatalf("got %q after start; want the socket closed on execve", m.Type)
	}
	if console != nil {
		// The terminal's output, until the slave's last holder is gone
		// (EIO); the line discipline writes \r\n for \n.
		out, _ := io.ReadAll(console)
		stdout.WriteString(strings.ReplaceAll(string(out), "\r\n", "\n"))
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("process: %v (output %q)", err, stdout.String())
	}
	return processOutcome{stdout: stdout.String()}
}

// readFrameWithFd reads one frame as initproc.ReadFrame does, and the fd
// that came with it (SCM_RIGHTS), or -1.
func readFrameWithFd(f *os.File, v any) (int, error) {
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(int(f.Fd()), buf[:4], oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return -1, err
	}
	fd := -1
	if oobn > 0 {
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		for i := range msgs {
			if fds, err := unix.ParseUnixRights(&msgs[i]); err == nil && len(fds) > 0 {
				fd = fds[0]
			}
		}
	}
	if n == 0 {
		return fd, io.EOF
	}
	if _, err := io.ReadFull(f, buf[n:4]); err != nil {
		return fd, err
	}
	size := int(buf[0]) | int(buf[1])<<8 | int(buf[2])<<16 | int(buf[3])<<24
	if _, err := io.ReadFull(f, buf[4:4+size]); err != nil {
		return fd, err
	}
	return fd, json.Unmarshal(buf[4:4+size], v)
}

func frame(payload []byte) []byte {
	n := len(payload)
	return append([]byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)}, payload...)
}

// report prints what the process got: identity, capabilities,
// no_new_privs, seccomp, rlimits, umask, cwd, session and keyring.
const report = `id -u; id -g; id -G; umask; pwd; ulimit -Sn; ulimit -Hn
grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status
ps -o sid= -p $$ | tr -d ' ' | grep -qx $$ && echo own-session
grep -q "_ses\.$KID" /proc/keys && echo own-keyring
echo "env ${FOO:-unset}"`

// The C setup and the Go one give a process the same settings, and fail
// alike, with the same text and class, for each thing that can go wrong.
func TestProcessSetupParity(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: the process switches user and capabilities")
	}
	umask := uint32(0o027)
	filter, err := seccomp.Compile(&specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls:      []specs.LinuxSyscall{{Names: []string{"mknodat", "mknod"}, Action: specs.ActErrno}},
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	plain := dir + "/plain"
	if err := os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// PATH entries are cleaned before use, as filepath.Join does: through
	// a symlink, dir/link/../bin is dir/bin, not where the kernel would go.
	if err := os.MkdirAll(dir+"/bin", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/bin/found-me", []byte("#!/bin/sh\necho found\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/usr/share", dir+"/link"); err != nil {
		t.Fatal(err)
	}
	sh := func(p *specs.Process) *specs.Process {
		if p.Args == nil {
			p.Args = []string{"sh", "-c", report}
		}
		if p.Env == nil {
			p.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "FOO=bar"}
		}
		return p
	}
	someCaps := []string{"CAP_KILL", "CAP_NET_BIND_SERVICE"}
	for i, tt := range []struct {
		name    string
		process *specs.Process
		cfg     func(*initproc.Config)
		want    []string // lines the output must hold (both setups)
		wantErr string   // or the error both report
		fails   bool     // or some error, both the same
	}{
		{name: "root, cwd", process: sh(&specs.Process{Cwd: dir}), want: []string{"0\n0\n", dir + "\n", "own-session", "own-keyring", "NoNewPrivs:\t0", "env bar"}},
		{name: "no cwd is /", process: sh(&specs.Process{}), want: []string{"\n/\n"}},
		{
			name: "user, groups, umask, caps, ambient, no_new_privs, rlimits",
			process: sh(&specs.Process{
				User: specs.User{UID: 65534, GID: 65533, AdditionalGids: []uint32{5, 7}, Umask: &umask},
				Capabilities: &specs.LinuxCapabilities{
					Bounding: someCaps, Effective: someCaps, Permitted: someCaps, Inheritable: someCaps,
					Ambient: []string{"CAP_NET_BIND_SERVICE"},
				},
				NoNewPrivileges: true,
				Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 200, Hard: 300}},
			}),
			want: []string{"65534\n65533\n", "0027\n", "\n200\n300\n", "CapBnd:\t0000000000000420", "CapAmb:\t0000000000000400", "NoNewPrivs:\t1"},
		},
		{
			name:    "seccomp without no_new_privs",
			process: sh(&specs.Process{Args: []string{"sh", "-c", report + "; mknod " + dir + "/node p || echo refused"}}),
			cfg:     func(c *initproc.Config) { c.Seccomp = filter },
			want:    []string{"Seccomp:\t2", "refused"},
		},
		{
			name:    "seccomp with no_new_privs",
			process: sh(&specs.Process{NoNewPrivileges: true, User: specs.User{UID: 1000, GID: 1000}}),
			cfg:     func(c *initproc.Config) { c.Seccomp = filter },
			want:    []string{"Seccomp:\t2", "NoNewPrivs:\t1", "1000\n1000\n"},
		},
		{name: "no keyring", process: sh(&specs.Process{}), cfg: func(c *initproc.Config) { c.NoNewKeyring = true }, want: []string{"own-session\nenv"}},
		{
			name:    "terminal",
			process: sh(&specs.Process{Terminal: true, ConsoleSize: &specs.Box{Height: 33, Width: 101}, User: specs.User{UID: 1000, GID: 1000}, Args: []string{"sh", "-c", "stty size; ls -ln $(tty) | cut -d' ' -f3,4; ps -o sid= -p $$ | tr -d ' ' | grep -qx $$ && echo own-session"}}),
			want:    []string{"33 101\n", "1000 1000\n", "own-session"},
		},
		{
			name:    "final cpu affinity",
			process: sh(&specs.Process{Args: []string{"sh", "-c", "grep Cpus_allowed_list /proc/self/status"}}),
			cfg:     func(c *initproc.Config) { c.Affinity = cpus(0) },
			want:    []string{"Cpus_allowed_list:\t0\n"},
		},
		{
			// A cpu this host does not have: refused unless best effort.
			name:    "final cpu affinity refused",
			process: sh(&specs.Process{}),
			cfg:     func(c *initproc.Config) { c.Affinity = cpus(1000) },
			wantErr: "process.execCPUAffinity.final: invalid argument []",
		},
		{
			name:    "final cpu affinity, best effort",
			process: sh(&specs.Process{Args: []string{"true"}}),
			cfg:     func(c *initproc.Config) { c.Affinity, c.AffinityBestEffort = cpus(1000), true },
		},
		{name: "PATH cleaned", process: sh(&specs.Process{Args: []string{"found-me"}, Env: []string{"PATH=/nowhere::" + dir + "/link/../bin/"}}), want: []string{"found"}},
		{name: "odd bytes quoted", process: sh(&specs.Process{Cwd: "/no\rsuch\x01/caf\u00e9"}), fails: true},
		{name: "not on PATH", process: sh(&specs.Process{Args: []string{"no-such-program"}}), wantErr: `exec: "no-such-program": executable file not found in $PATH` + " [not_found]"},
		{name: "no PATH", process: sh(&specs.Process{Args: []string{"sh"}, Env: []string{"A=b"}}), wantErr: `exec: "sh": executable file not found in $PATH` + " [not_found]"},
		{name: "missing path", process: sh(&specs.Process{Args: []string{"/no/such"}}), wantErr: `exec: "/no/such": stat /no/such: no such file or directory [not_found]`},
		{name: "directory", process: sh(&specs.Process{Args: []string{dir}}), wantErr: `exec: "` + dir + `": is a directory [invalid_argument]`},
		{name: "not executable", process: sh(&specs.Process{Args: []string{plain}}), wantErr: `exec: "` + plain + `": permission denied [invalid_argument]`},
		{name: "bad cwd", process: sh(&specs.Process{Cwd: "/no/such"}), wantErr: `chdir to cwd "/no/such" in container: chdir /no/such: no such file or directory: not found [not_found]`},
		{
			name:    "hard rlimit raised",
			process: sh(&specs.Process{Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1 << 30, Hard: 1 << 30}}}),
			wantErr: "setrlimit RLIMIT_NOFILE (soft 1073741824, hard 1073741824): operation not permitted (raising a hard limit needs CAP_SYS_RESOURCE) []",
		},
		{
			name:    "soft over hard",
			process: sh(&specs.Process{Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_CORE", Soft: 10, Hard: 5}}}),
			wantErr: "setrlimit RLIMIT_CORE (soft 10, hard 5): invalid argument [invalid_argument]",
		},
		// Where AppArmor is on, the profile is not loaded; where it is
		// off, the label cannot be set either.
		{name: "apparmor profile not loaded", process: sh(&specs.Process{ApparmorProfile: "mini-no-such-profile"}), fails: true},
		{
			name: "ambient not inheritable",
			process: sh(&specs.Process{Capabilities: &specs.LinuxCapabilities{
				Bounding: someCaps, Effective: someCaps, Permitted: someCaps, Ambient: []string{"CAP_KILL"},
			}}),
			wantErr: "raise ambient capability CAP_KILL (it must be permitted and inheritable): operation not permitted []",
		},
		{
			name: "effective not permitted",
			process: sh(&specs.Process{Capabilities: &specs.LinuxCapabilities{
				Bounding: someCaps, Effective: someCaps, Permitted: []string{"CAP_KILL"},
			}}),
			wantErr: "capset: operation not permitted (effective CAP_NET_BIND_SERVICE not in the permitted set) []",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// Its own keyring name, which the report looks for.
			id := "parity-" + strconv.Itoa(os.Getpid()) + "-" + strconv.Itoa(i)
			tt.process.Env = append(tt.process.Env, "KID="+id)
			cfg := initproc.Config{ID: id, Exec: true, Process: tt.process}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			inC, inGo := runProcess(t, cfg, true), runProcess(t, cfg, false)
			// Errors may name the process's own /proc files.
			inC.errText, inGo.errText = procPids.ReplaceAllString(inC.errText, "/proc/N/task/N/"), procPids.ReplaceAllString(inGo.errText, "/proc/N/task/N/")
			if inC != inGo {
				t.Fatalf("the setups differ:\nC:  %+v\nGo: %+v", inC, inGo)
			}
			if tt.wantErr != "" {
				if got := inC.errText + " [" + inC.errClass + "]"; got != tt.wantErr {
					t.Errorf("error %q; want %q", got, tt.wantErr)
				}
				return
			}
			if inC.errText != "" {
				t.Logf("both: %s [%s]", inC.errText, inC.errClass)
			}
			if tt.fails != (inC.errText != "") {
				t.Fatalf("error %q; want one: %v", inC.errText, tt.fails)
			}
			for _, w := range tt.want {
				if !strings.Contains(inC.stdout, w) {
					t.Errorf("output lacks %q:\n%s", w, inC.stdout)
				}
			}
		})
	}
}

// cpus is a cpu set of the given cpus.
func cpus(list ...int) *unix.CPUSet {
	var set unix.CPUSet
	for _, c := range list {
		set.Set(c)
	}
	return &set
}

var procPids = regexp.MustCompile(`/proc/[0-9]+/task/[0-9]+/`)

// What the C setup cannot apply whole is left to the Go one.
func TestProcessPlanEligible(t *testing.T) {
	listener := &seccomp.Program{Filter: make([]byte, 8), Flags: unix.SECCOMP_FILTER_FLAG_NEW_LISTENER}
	for _, tt := range []struct {
		name string
		cfg  initproc.Config
		want bool
	}{
		{"plain exec", initproc.Config{Exec: true, Process: &specs.Process{Args: []string{"true"}}}, true},
		{"init", initproc.Config{Process: &specs.Process{Args: []string{"true"}}}, false},
		{"no args", initproc.Config{Exec: true, Process: &specs.Process{}}, false},
		{"terminal", initproc.Config{Exec: true, Process: &specs.Process{Args: []string{"sh"}, Terminal: true}}, true},
		{"apparmor", initproc.Config{Exec: true, Process: &specs.Process{Args: []string{"sh"}, ApparmorProfile: "p"}}, true},
		{"selinux", initproc.Config{Exec: true, Process: &specs.Process{Args: []string{"sh"}, SelinuxLabel: "l"}}, false},
		{"scheduler", initproc.Config{Exec: true, Process: &specs.Process{Args: []string{"sh"}, Scheduler: &specs.Scheduler{}}}, false},
		{"io priority", initproc.Config{Exec: true, Process: &specs.Process{Args: []string{"sh"}, IOPriority: &specs.LinuxIOPriority{}}}, false},
		{"personality", initproc.Config{Exec: true, Process: &specs.Process{Args: []string{"sh"}}, Personality: &specs.LinuxPersonality{}}, false},
		{"memory policy", initproc.Config{Exec: true, Process: &specs.Process{Args: []string{"sh"}}, MemoryPolicy: &specs.LinuxMemoryPolicy{}}, false},
		{"affinity", initproc.Config{Exec: true, Process: &specs.Process{Args: []string{"sh"}}, Affinity: &unix.CPUSet{}}, true},
		{"seccomp listener", initproc.Config{Exec: true, Process: &specs.Process{Args: []string{"sh"}}, Seccomp: listener}, false},
		{"unknown capability", initproc.Config{Exec: true, Process: &specs.Process{Args: []string{"sh"}, Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_NOPE"}}}}, false},
		{"unknown rlimit", initproc.Config{Exec: true, Process: &specs.Process{Args: []string{"sh"}, Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOPE"}}}}, false},
		{"NUL in an arg", initproc.Config{Exec: true, Process: &specs.Process{Args: []string{"sh", "a\x00b"}}}, false},
		{"NUL in env", initproc.Config{Exec: true, Process: &specs.Process{Args: []string{"sh"}, Env: []string{"A=\x00"}}}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, ok := ProcessPlan(&tt.cfg, initproc.LastCap()); ok != tt.want {
				t.Errorf("ProcessPlan: %v; want %v", ok, tt.want)
			}
		})
	}
}

// The C setup names capabilities in its errors as the Go one does.
func TestCapabilityNamesAgree(t *testing.T) {
	if c, g := capabilityNames(), initproc.CapabilityNames(); !slices.Equal(c, g) {
		t.Errorf("process.c names %v;\ninitproc names %v", c, g)
	}
}
