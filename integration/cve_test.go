package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
)

// Issue 8: the CVE classes stay closed, by test: the runtime's binary is
// out of reach of the container (CVE-2019-5736), no runtime fd reaches the
// user's process or serves as a way out through its cwd (CVE-2024-21626),
// masked and read-only paths hold for execs, and a symlink in the image
// cannot aim a mount at the host.
func TestEscapeClasses(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		t.Run("runtime-binary-unreachable", func(t *testing.T) {
			// A seccomp listener holds init, and then an exec, at a call
			// each makes in the container before its execve (setgroups, as
			// it switches to the user); meanwhile the test looks at its
			// /proc/PID/exe from the host, as a process in the container
			// could.
			tc := newCase(t, tg, "cve5736")
			shimBins := runtimeBinaries(t, tg.runtime)
			var mu sync.Mutex
			found := map[specs.ContainerState]string{}
			exes := map[specs.ContainerState]string{}
			sock := filepath.Join(t.TempDir(), "agent.sock")
			startSeccompAgent(t, sock, func(st specs.ContainerProcessState, req *libseccomp.ScmpNotifReq) libseccomp.ScmpNotifResp {
				mu.Lock()
				defer mu.Unlock()
				if _, ok := found[st.State.Status]; !ok {
					found[st.State.Status] = inspectExe(int(req.Pid), shimBins)
					exes[st.State.Status], _ = os.Readlink(fmt.Sprintf("/proc/%d/exe", req.Pid))
				}
				return libseccomp.ScmpNotifResp{Flags: libseccomp.NotifRespFlagContinue}
			})
			tc.startDetachedArgs(tc.specArgs([]string{"--detach"}, func(s *specs.Spec) {
				// Without no_new_privs the filter is loaded before the
				// user switch, so setgroups is filtered.
				s.Process.NoNewPrivileges = false
				s.Linux.Seccomp = &specs.LinuxSeccomp{
					DefaultAction: specs.ActAllow,
					ListenerPath:  sock,
					Syscalls:      []specs.LinuxSyscall{{Names: []string{"setgroups"}, Action: specs.ActNotify}},
				}
			}, "/bin/sleep", "1000"))
			if res := tc.exec("e1", "/bin/true"); res.ExitCode != 0 {
				t.Fatalf("exec: %s", res)
			}
			mu.Lock()
			defer mu.Unlock()
			what, ok := found[specs.StateRunning]
			if !ok {
				t.Fatalf("the exec was never held at setgroups (held: %v)", found)
			}
			if what != "" {
				t.Errorf("an exec before its execve: %s", what)
			}
			// Init too, though it has a pid namespace of its own: an exec
			// of a created container, or a startContainer hook, sees it
			// before its execve.
			if what, ok := found[specs.StateCreating]; !ok {
				t.Errorf("init was never held at setgroups (held: %v)", found)
			} else if what != "" {
				t.Errorf("init before its execve: %s", what)
			}
			// With the init binary beside the shim, processes start from
			// it, sealed (through the overlay: its name; a memfd copy
			// where there is none).
			if _, err := os.Stat(shimBins[len(shimBins)-1]); tg.runtime == MiniRuntime && err == nil {
				for _, st := range []specs.ContainerState{specs.StateCreating, specs.StateRunning} {
					if exe := exes[st]; !strings.HasPrefix(exe, "/memfd:") && filepath.Base(exe) != InitBinaryName {
						t.Errorf("the %s process started from %s, not from %s", st, exe, InitBinaryName)
					}
				}
			}
		})
		t.Run("no-runtime-fds", func(t *testing.T) {
			// Init and an exec hold stdio and nothing else of the runtime.
			tc := newCase(t, tg, "cvefds")
			initPid := tc.startDetached("/bin/sleep", "1000")
			done := tc.background("", tc.execArgs(nil, "e1", "/bin/sleep", "1000")...)
			for who, pid := range map[string]string{"init": initPid, "exec": tc.execPsPid("e1")} {
				entries, err := os.ReadDir("/proc/" + pid + "/fd")
				if err != nil {
					t.Fatal(err)
				}
				var fds []string
				for _, e := range entries {
					target, _ := os.Readlink("/proc/" + pid + "/fd/" + e.Name())
					fds = append(fds, e.Name()+"→"+target)
				}
				if len(entries) != 3 {
					t.Errorf("%s holds %d fds, want stdio only: %v", who, len(entries), fds)
				}
			}
			if res := tc.ctr("", "tasks", "kill", "--exec-id", "e1", "--signal", "SIGKILL", tc.id); res.ExitCode != 0 {
				t.Fatalf("kill exec: %s", res)
			}
			tc.await(done)
		})
		t.Run("cwd-through-fd", func(t *testing.T) {
			// CVE-2024-21626: a cwd of /proc/self/fd/N must not land on a
			// directory the runtime had open. Each try must fail, or run
			// inside the container.
			tc := newCase(t, tg, "cvecwd")
			tc.startDetached("/bin/sleep", "1000")
			for fd := 3; fd <= 12; fd++ {
				cwd := fmt.Sprintf("/proc/self/fd/%d", fd)
				res := tc.ctr("", tc.execArgs([]string{"--cwd", cwd}, "e"+strconv.Itoa(fd), "/bin/sh", "-c", "ls ./etc/passwd ../etc/passwd 2>/dev/null; cat /proc/self/mountinfo | head -1")...)
				if res.ExitCode == 0 {
					t.Errorf("exec with cwd %s ran: %s", cwd, res)
				}
			}
			for fd := 3; fd <= 8; fd++ {
				sub := newCase(t, tg, fmt.Sprintf("cvecwdinit%d", fd))
				args := sub.specArgs([]string{"--rm"}, func(s *specs.Spec) { s.Process.Cwd = fmt.Sprintf("/proc/self/fd/%d", fd) }, "/bin/sh", "-c", "ls ./etc/passwd")
				if res := sub.ctr("", args...); res.ExitCode == 0 {
					t.Errorf("init with cwd /proc/self/fd/%d ran: %s", fd, res)
				}
			}
		})
		t.Run("masked-readonly-in-exec", func(t *testing.T) {
			tc := newCase(t, tg, "cvemask")
			tc.startDetached("/bin/sleep", "1000")
			// What ctr's spec masks (/proc/keys, /sys/firmware) and makes
			// read-only (/proc/sys, /proc/bus), as an exec sees it.
			res := tc.exec("e1", "/bin/sh", "-c", "wc -c < /proc/keys; ls /sys/firmware | wc -l; grep -E ' /proc/(sys|bus) ' /proc/self/mountinfo")
			lines := strings.Split(strings.TrimSpace(res.Stdout), "\n")
			if res.ExitCode != 0 || len(lines) != 4 || lines[0] != "0" || lines[1] != "0" {
				t.Fatalf("exec: /proc/keys must read empty, /sys/firmware be empty, /proc/sys and /proc/bus be mounts:\n%s", res)
			}
			for _, l := range lines[2:] {
				if f := strings.Fields(l); len(f) < 6 || !strings.HasPrefix(f[5], "ro") {
					t.Errorf("exec: read-only path not read-only: %s", l)
				}
			}
		})
		t.Run("mount-through-symlink", func(t *testing.T) {
			// An image's absolute and relative symlinks resolve inside
			// the rootfs: a mount aimed through them at /etc lands in the
			// container's /etc, never the host's.
			tc := newCase(t, tg, "cvesymlink")
			rootfs := filepath.Join(t.TempDir(), "rootfs")
			if err := BuildBusyboxRootfs(context.Background(), rootfs); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/etc", filepath.Join(rootfs, "abs")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("../../../../../etc", filepath.Join(rootfs, "tmp", "rel")); err != nil {
				t.Fatal(err)
			}
			src := t.TempDir()
			if err := os.WriteFile(filepath.Join(src, "marker"), []byte("from-host-dir\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			name := "minitest-" + tc.id
			spec, err := tc.c.DefaultSpec(tc.ctx, rootfs)
			if err != nil {
				t.Fatal(err)
			}
			spec.Mounts = append(spec.Mounts,
				specs.Mount{Destination: "/abs/" + name + "-a", Type: "bind", Source: src, Options: []string{"rbind", "ro"}},
				specs.Mount{Destination: "/tmp/rel/" + name + "-r", Type: "bind", Source: src, Options: []string{"rbind", "ro"}},
			)
			path, err := tc.c.WriteSpec(tc.id, spec, "/bin/sh", "-c", "cat /etc/"+name+"-a/marker /etc/"+name+"-r/marker")
			if err != nil {
				t.Fatal(err)
			}
			res := tc.ctr("", "run", "--rm", "--runtime", tg.runtime, "--config", path, tc.id)
			if res.ExitCode != 0 || res.Stdout != "from-host-dir\nfrom-host-dir\n" {
				t.Errorf("want both mounts at the container's /etc:\n%s", res)
			}
			for _, p := range []string{"/etc/" + name + "-a", "/etc/" + name + "-r"} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("the mount escaped to the host: %s exists", p)
					os.RemoveAll(p)
				}
			}
		})
	})
}

// runtimeBinaries are the runtime's binaries on the host: our shim and
// the init binary beside it, or runc.
func runtimeBinaries(t *testing.T, runtime string) []string {
	t.Helper()
	if runtime != MiniRuntime {
		return []string{"/usr/bin/runc"}
	}
	shim, err := filepath.EvalSymlinks(filepath.Join(suite.ShimDir, ShimBinaryName(MiniRuntime)))
	if err != nil {
		t.Fatal(err)
	}
	// The init binary, when the shim has one beside it.
	return []string{shim, filepath.Join(filepath.Dir(shim), InitBinaryName)}
}

// inspectExe says what is wrong with /proc/PID/exe of a process that has
// not execve()d yet, or "" when it is none of the runtime's binaries and
// not writable.
func inspectExe(pid int, runtimeBins []string) string {
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	target, err := os.Readlink(exe)
	if err != nil {
		return "readlink " + exe + ": " + err.Error()
	}
	var problems []string
	if slices.Contains(runtimeBins, target) {
		problems = append(problems, exe+" is the runtime's binary "+target)
	}
	if f, err := os.OpenFile(exe, os.O_WRONLY, 0); err == nil {
		f.Close()
		problems = append(problems, exe+" ("+target+") opens for writing")
	}
	return strings.Join(problems, "; ")
}
