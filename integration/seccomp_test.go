package integration

import (
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// Issue 8, seccomp: containerd's default profile (ctr run --seccomp) and
// profiles of our own in a --config spec are enforced for init and execs,
// with every action the cases use, argument filters, the order runc loads
// filters in, and user notification through a listener.
func TestSeccomp(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		t.Run("default-profile", func(t *testing.T) {
			tc := newCase(t, tg, "scdef")
			// Unprivileged user namespaces are allowed here, and only the
			// profile refuses unshare(CLONE_NEWUSER) without CAP_SYS_ADMIN.
			const probe = "grep '^Seccomp:' /proc/self/status; unshare -U true && echo unshare-ok"
			if res := tc.run("", "/bin/sh", "-c", probe); res.ExitCode != 0 || !strings.Contains(res.Stdout, "Seccomp:\t0") || !strings.Contains(res.Stdout, "unshare-ok") {
				t.Fatalf("without a profile: want Seccomp 0 and unshare allowed:\n%s", res)
			}
			tc.startDetachedArgs(tc.runArgs([]string{"--detach", "--seccomp"}, "", "/bin/sleep", "1000"))
			for _, id := range []string{"e1", "e2"} {
				res := tc.exec(id, "/bin/sh", "-c", probe)
				if !strings.Contains(res.Stdout, "Seccomp:\t2") || strings.Contains(res.Stdout, "unshare-ok") || !strings.Contains(res.Stderr, "Operation not permitted") {
					t.Errorf("exec %s under the default profile: want Seccomp 2 and unshare refused:\n%s", id, res)
				}
			}
			pid, err := strconv.Atoi(tc.waitStatus("RUNNING"))
			if err != nil {
				t.Fatal(err)
			}
			got, err := ProcStatusField(pid, "Seccomp")
			if err != nil {
				t.Fatal(err)
			}
			if got != "2" {
				t.Errorf("init's Seccomp = %q, want 2", got)
			}
		})
		t.Run("errno-and-args", func(t *testing.T) {
			tc := newCase(t, tg, "scerr")
			eacces := uint(unix.EACCES)
			args := tc.specArgs([]string{"--rm"}, func(s *specs.Spec) {
				s.Linux.Seccomp = &specs.LinuxSeccomp{
					DefaultAction: specs.ActAllow,
					Syscalls: []specs.LinuxSyscall{
						{Names: []string{"chmod", "fchmod", "fchmodat", "fchmodat2"}, Action: specs.ActErrno, ErrnoRet: &eacces},
						// kill(pid, SIGUSR1) refused, any other signal allowed.
						{Names: []string{"kill"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 1, Op: specs.OpEqualTo, Value: uint64(unix.SIGUSR1)}}},
						{Names: []string{"no_such_syscall_anywhere"}, Action: specs.ActKillProcess},
					},
				}
			}, "/bin/sh", "-c", "touch /tmp/f; chmod 600 /tmp/f; echo chmod=$?; kill -USR2 $$ 2>/dev/null; kill -0 $$; echo kill0=$?; kill -USR1 $$; echo usr1=$?")
			res := tc.ctr("", args...)
			for _, want := range []string{"chmod=1", "kill0=0", "usr1=1"} {
				if !strings.Contains(res.Stdout, want) {
					t.Errorf("want %q in the output:\n%s", want, res)
				}
			}
			for _, want := range []string{"Permission denied", "Operation not permitted"} {
				if !strings.Contains(res.Stderr, want) {
					t.Errorf("want %q in stderr:\n%s", want, res)
				}
			}
		})
		t.Run("kill-process", func(t *testing.T) {
			tc := newCase(t, tg, "sckill")
			args := tc.specArgs([]string{"--rm"}, func(s *specs.Spec) {
				s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
					{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActKillProcess},
				}}
			}, "/bin/mkdir", "/tmp/d")
			if res := tc.ctr("", args...); res.ExitCode != 128+int(unix.SIGSYS) {
				t.Errorf("want exit code %d (killed by SIGSYS):\n%s", 128+int(unix.SIGSYS), res)
			}
		})
		t.Run("no-new-privileges-setuid-denied", func(t *testing.T) {
			// With no_new_privs the filter is loaded after the switch to
			// the user, so a profile that refuses the setuid family still
			// lets the container start as that user.
			tc := newCase(t, tg, "scnnp")
			args := tc.specArgs([]string{"--rm"}, func(s *specs.Spec) {
				s.Process.NoNewPrivileges = true
				s.Process.User = specs.User{UID: 1000, GID: 1000}
				s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{
					Names:  []string{"setuid", "setgid", "setgroups", "setresuid", "setresgid", "setreuid", "setregid", "setfsuid", "setfsgid", "capset"},
					Action: specs.ActErrno,
				}}}
			}, "/bin/sh", "-c", "id -u; id -g; grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status")
			res := tc.ctr("", args...)
			if res.ExitCode != 0 || !strings.HasPrefix(res.Stdout, "1000\n1000\n") || !strings.Contains(res.Stdout, "NoNewPrivs:\t1") || !strings.Contains(res.Stdout, "Seccomp:\t2") {
				t.Errorf("want uid and gid 1000, no_new_privs and a filter:\n%s", res)
			}
		})
		t.Run("notify-listener", func(t *testing.T) {
			tc := newCase(t, tg, "scnotify")
			sock := filepath.Join(t.TempDir(), "agent.sock")
			agent := startSeccompAgent(t, sock, func(specs.ContainerProcessState, *libseccomp.ScmpNotifReq) libseccomp.ScmpNotifResp {
				return libseccomp.ScmpNotifResp{Error: int32(unix.ENOMSG)}
			})
			args := tc.specArgs([]string{"--rm"}, func(s *specs.Spec) {
				s.Linux.Seccomp = &specs.LinuxSeccomp{
					DefaultAction:    specs.ActAllow,
					ListenerPath:     sock,
					ListenerMetadata: "meta-" + tc.id,
					Syscalls:         []specs.LinuxSyscall{{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActNotify}},
				}
			}, "/bin/sh", "-c", "mkdir /tmp/d; echo mkdir=$?; touch /tmp/f && echo touch-ok")
			res := tc.ctr("", args...)
			if res.ExitCode != 0 || !strings.Contains(res.Stdout, "mkdir=1") || !strings.Contains(res.Stderr, "No message of desired type") || !strings.Contains(res.Stdout, "touch-ok") {
				t.Errorf("want mkdir answered by the agent with ENOMSG, the rest allowed:\n%s", res)
			}
			conn := agent.wait(t, 1)[0]
			st := conn.state
			if st.State.ID != tc.id || st.State.Status != specs.StateCreating || st.Metadata != "meta-"+tc.id ||
				st.Pid <= 0 || st.State.Pid != st.Pid || len(st.Fds) != 1 || st.Fds[0] != specs.SeccompFdName {
				t.Errorf("the agent got %+v; want the container's id, status creating, the metadata, init's pid and one seccompFd", st)
			}
			if conn.answered == 0 {
				t.Error("the agent answered no notification")
			}
		})
	})
}

// seccompAgent is a listener for a profile's listenerPath. Every process
// that loads the filter connects once with its state and notify fd; the
// agent answers each notification with what answer returns (its ID filled
// in) until that fd closes.
type seccompAgent struct {
	mu     sync.Mutex
	conns  []*agentConn
	err    error
	answer func(specs.ContainerProcessState, *libseccomp.ScmpNotifReq) libseccomp.ScmpNotifResp
}

// agentConn is what one process sent, and how many calls were answered.
type agentConn struct {
	state    specs.ContainerProcessState
	answered int
}

func startSeccompAgent(t *testing.T, path string, answer func(specs.ContainerProcessState, *libseccomp.ScmpNotifReq) libseccomp.ScmpNotifResp) *seccompAgent {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	// Serving goroutines end when their container process is gone; the
	// case's own cleanup, which runs after this one, removes it.
	t.Cleanup(func() { ln.Close() })
	a := &seccompAgent{answer: answer}
	go func() {
		for {
			conn, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			go a.serve(conn)
		}
	}()
	return a
}

func (a *seccompAgent) fail(err error) {
	a.mu.Lock()
	a.err = errors.Join(a.err, err)
	a.mu.Unlock()
}

func (a *seccompAgent) serve(conn *net.UnixConn) {
	defer conn.Close()
	buf, oob := make([]byte, 64<<10), make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		a.fail(err)
		return
	}
	c := &agentConn{}
	if err := json.Unmarshal(buf[:n], &c.state); err != nil {
		a.fail(err)
		return
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		a.fail(errors.Join(errors.New("no fd came with the state"), err))
		return
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		a.fail(errors.Join(errors.New("not one fd came with the state"), err))
		return
	}
	defer unix.Close(fds[0])
	a.mu.Lock()
	a.conns = append(a.conns, c)
	a.mu.Unlock()
	fd := libseccomp.ScmpFd(fds[0])
	for {
		req, err := libseccomp.NotifReceive(fd)
		if err != nil {
			// The filter's last process is gone.
			return
		}
		resp := a.answer(c.state, req)
		resp.ID = req.ID
		if libseccomp.NotifRespond(fd, &resp) == nil {
			a.mu.Lock()
			c.answered++
			a.mu.Unlock()
		}
	}
}

// wait returns the first n connections once they arrived.
func (a *seccompAgent) wait(t *testing.T, n int) []agentConn {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		a.mu.Lock()
		got, err := len(a.conns), a.err
		var out []agentConn
		if got >= n {
			for _, c := range a.conns[:n] {
				out = append(out, *c)
			}
		}
		a.mu.Unlock()
		if err != nil {
			t.Fatalf("seccomp agent: %v", err)
		}
		if out != nil {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("seccomp agent: %d connections, want %d", got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
