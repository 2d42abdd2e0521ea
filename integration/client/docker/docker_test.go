package docker

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/minishim/containerd-shim-mini-v2/integration"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// TestDockerRun: output on both streams, the exit code and AutoRemove, as
// `docker run --rm` does it (attach, wait for removal, start).
func TestDockerRun(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, tg target) {
		ctx := caseContext(t)
		b := createBox(t, ctx, suite.docker, tg,
			&container.Config{Cmd: []string{"sh", "-c", "echo out; echo err >&2; exit 7"}, AttachStdout: true, AttachStderr: true},
			&container.HostConfig{AutoRemove: true})
		_, collect := b.attach(ctx, false, false)
		removed := b.waitChan(ctx, container.WaitConditionRemoved)
		b.start(ctx)
		if code := removed(); code != 7 {
			t.Errorf("exit code %d, want 7", code)
		}
		if stdout, stderr := collect(); stdout != "out\n" || stderr != "err\n" {
			t.Errorf("stdout %q stderr %q, want \"out\\n\" and \"err\\n\"", stdout, stderr)
		}
		if _, err := suite.docker.client.ContainerInspect(ctx, b.id, client.ContainerInspectOptions{}); !errdefs.IsNotFound(err) {
			t.Errorf("AutoRemove: inspect after exit: %v, want not found", err)
		}
	})
}

// TestDockerRuntimeNames: our runtime is reached by its daemon.json name
// and by its containerd name with no daemon.json entry, and it is our shim
// that serves the container.
func TestDockerRuntimeNames(t *testing.T) {
	requireSuite(t)
	if suite.ShimErr != nil {
		t.Fatalf("%s not available: %v", integration.MiniRuntime, suite.ShimErr)
	}
	for _, name := range []string{miniRuntimeName, integration.MiniRuntime} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := caseContext(t)
			tg := target{runtime: integration.MiniRuntime, name: name}
			b := createBox(t, ctx, suite.docker, tg, &container.Config{Cmd: []string{"sleep", "60"}}, &container.HostConfig{})
			b.start(ctx)
			shim, ok := b.c.ShimProcess(integration.MiniRuntime, b.id)
			if !ok {
				t.Fatalf("no %s serves container %s", integration.ShimBinaryName(integration.MiniRuntime), b.id)
			}
			st := b.inspect(ctx).State
			if !st.Running || st.Pid <= 0 {
				t.Fatalf("state %+v, want running", st)
			}
			// The container's init is a child of our shim.
			ppid, err := integration.ProcStatusField(st.Pid, "PPid")
			if err != nil {
				t.Fatal(err)
			}
			if ppid != fmt.Sprint(shim.Pid) {
				t.Errorf("init %d has parent %s, want our shim %d", st.Pid, ppid, shim.Pid)
			}
		})
	}
}

// TestDockerTTY: a container with a terminal, attached with stdin: the
// shell reads what is typed, a resize reaches the terminal, the exit code
// comes back.
func TestDockerTTY(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, tg target) {
		ctx := caseContext(t)
		b := createBox(t, ctx, suite.docker, tg, &container.Config{
			Cmd: []string{"sh"}, Tty: true, OpenStdin: true, StdinOnce: true,
			AttachStdin: true, AttachStdout: true, AttachStderr: true,
		}, &container.HostConfig{})
		conn, collect := b.attach(ctx, true, true)
		exited := b.waitChan(ctx, container.WaitConditionNextExit)
		b.start(ctx)
		if _, err := suite.docker.client.ContainerResize(ctx, b.id, client.ContainerResizeOptions{Height: 33, Width: 97}); err != nil {
			t.Fatalf("resize: %v", err)
		}
		if _, err := io.WriteString(conn.Conn, "tty; stty size; echo $((6*7)); exit 5\n"); err != nil {
			t.Fatalf("type into the terminal: %v", err)
		}
		if code := exited(); code != 5 {
			t.Errorf("exit code %d, want 5", code)
		}
		out, _ := collect()
		for _, want := range []string{"/dev/pts/", "33 97", "42"} {
			if !strings.Contains(out, want) {
				t.Errorf("terminal output lacks %q:\n%s", want, out)
			}
		}
	})
}

// TestDockerExec: exec with output on both streams, a user and an exit
// code; exec with a terminal.
func TestDockerExec(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, tg target) {
		ctx := caseContext(t)
		b := createBox(t, ctx, suite.docker, tg, &container.Config{Cmd: []string{"sleep", "600"}}, &container.HostConfig{})
		b.start(ctx)
		r := b.exec(ctx, client.ExecCreateOptions{User: "1000:1000", Cmd: []string{"sh", "-c", "echo exec-out; echo exec-err >&2; id -u; id -g; exit 3"}})
		if r.stdout != "exec-out\n1000\n1000\n" || r.stderr != "exec-err\n" || r.exitCode != 3 {
			t.Errorf("exec: stdout %q stderr %q exit %d, want \"exec-out\\n1000\\n1000\\n\", \"exec-err\\n\", 3", r.stdout, r.stderr, r.exitCode)
		}
		r = b.exec(ctx, client.ExecCreateOptions{TTY: true, Cmd: []string{"sh", "-c", "tty; exit 4"}})
		if !strings.Contains(r.stdout, "/dev/pts/") || r.exitCode != 4 {
			t.Errorf("exec with a terminal: output %q exit %d, want a /dev/pts/ terminal and 4", r.stdout, r.exitCode)
		}
	})
}

// TestDockerLogs: what a container printed on each stream is in its logs,
// apart and in order.
func TestDockerLogs(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, tg target) {
		ctx := caseContext(t)
		b := createBox(t, ctx, suite.docker, tg,
			&container.Config{Cmd: []string{"sh", "-c", "for i in 1 2 3; do echo line$i; echo errline$i >&2; done"}},
			&container.HostConfig{})
		b.start(ctx)
		if code := b.wait(ctx); code != 0 {
			t.Fatalf("exit code %d", code)
		}
		stdout, stderr := b.logs(ctx)
		if stdout != "line1\nline2\nline3\n" || stderr != "errline1\nerrline2\nerrline3\n" {
			t.Errorf("logs: stdout %q stderr %q", stdout, stderr)
		}
	})
}

// trapScript traps TERM (exit 42) and USR1 (a line), and idles in short
// sleeps so that a trap runs soon.
const trapScript = `trap 'echo got-term; exit 42' TERM; trap 'echo got-usr1' USR1; echo ready; while true; do sleep 0.1; done`

// TestDockerStopKillRestartPause: a graceful stop, a stop that has to
// kill, a signal, a restart, pause and unpause with the freezer seen from
// the host.
func TestDockerStopKillRestartPause(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, tg target) {
		ctx := caseContext(t)
		b := createBox(t, ctx, suite.docker, tg, &container.Config{Cmd: []string{"sh", "-c", trapScript}}, &container.HostConfig{})
		b.start(ctx)
		waitLog(t, b, "ready", 1)

		if _, err := suite.docker.client.ContainerKill(ctx, b.id, client.ContainerKillOptions{Signal: "USR1"}); err != nil {
			t.Fatalf("kill -s USR1: %v", err)
		}
		waitLog(t, b, "got-usr1", 1)

		if _, err := suite.docker.client.ContainerPause(ctx, b.id, client.ContainerPauseOptions{}); err != nil {
			t.Fatalf("pause: %v", err)
		}
		if st := b.inspect(ctx).State; !st.Paused {
			t.Errorf("after pause: state %+v, want paused", st)
		}
		if f := frozen(b); f != "FROZEN" && f != "1" {
			t.Errorf("after pause: freezer %q", f)
		}
		if _, err := suite.docker.client.ContainerUnpause(ctx, b.id, client.ContainerUnpauseOptions{}); err != nil {
			t.Fatalf("unpause: %v", err)
		}
		if st := b.inspect(ctx).State; st.Paused || !st.Running {
			t.Errorf("after unpause: state %+v, want running", st)
		}
		if f := frozen(b); f != "THAWED" && f != "0" {
			t.Errorf("after unpause: freezer %q", f)
		}

		timeout := 20
		if _, err := suite.docker.client.ContainerStop(ctx, b.id, client.ContainerStopOptions{Timeout: &timeout}); err != nil {
			t.Fatalf("stop: %v", err)
		}
		if st := b.inspect(ctx).State; st.Running || st.ExitCode != 42 {
			t.Errorf("after a graceful stop: state %+v, want exit code 42 (the TERM trap)", st)
		}

		if _, err := suite.docker.client.ContainerRestart(ctx, b.id, client.ContainerRestartOptions{Timeout: &timeout}); err != nil {
			t.Fatalf("restart: %v", err)
		}
		st := b.inspect(ctx).State
		if !st.Running || st.Pid <= 0 {
			t.Fatalf("after restart: state %+v, want running", st)
		}
		firstPid := st.Pid
		waitLog(t, b, "ready", 2)
		// Restart again while it runs: stopped (TERM) and started anew.
		if _, err := suite.docker.client.ContainerRestart(ctx, b.id, client.ContainerRestartOptions{Timeout: &timeout}); err != nil {
			t.Fatalf("restart of a running container: %v", err)
		}
		if st := b.inspect(ctx).State; !st.Running || st.Pid == firstPid {
			t.Errorf("after restarting a running container: state %+v, want running with a pid other than %d", st, firstPid)
		}
		waitLog(t, b, "got-term", 2)

		exited := b.waitChan(ctx, container.WaitConditionNextExit)
		if _, err := suite.docker.client.ContainerKill(ctx, b.id, client.ContainerKillOptions{}); err != nil {
			t.Fatalf("kill: %v", err)
		}
		if code := exited(); code != 137 {
			t.Errorf("exit code after kill %d, want 137", code)
		}

		// pid 1 without a TERM handler ignores TERM: stop kills it after
		// the timeout.
		s := createBox(t, ctx, suite.docker, tg, &container.Config{Cmd: []string{"sleep", "600"}}, &container.HostConfig{})
		s.start(ctx)
		one := 1
		if _, err := suite.docker.client.ContainerStop(ctx, s.id, client.ContainerStopOptions{Timeout: &one}); err != nil {
			t.Fatalf("stop: %v", err)
		}
		if st := s.inspect(ctx).State; st.Running || st.ExitCode != 137 {
			t.Errorf("after a stop that had to kill: state %+v, want exit code 137", st)
		}
	})
}

// waitLog waits until line appears at least n times in the container's
// stdout.
func waitLog(t *testing.T, b *box, line string, n int) {
	t.Helper()
	ctx := caseContext(t)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		out, _ := b.logs(ctx)
		if strings.Count(out, line+"\n") >= n {
			return
		}
	}
	out, _ := b.logs(ctx)
	t.Fatalf("container %s did not print %q %d times within 30s; stdout:\n%s", b.id, line, n, out)
}

// frozen is the container cgroup's freezer state: v1's freezer.state, or
// v2's cgroup.freeze.
func frozen(b *box) string {
	return b.cgroupFile("freezer", "freezer.state", "cgroup.freeze")
}

// TestDockerResources: memory, CPU and pids limits in the container's
// cgroup, changed by update; stats of the running container.
func TestDockerResources(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, tg target) {
		ctx := caseContext(t)
		pids := int64(50)
		b := createBox(t, ctx, suite.docker, tg, &container.Config{Cmd: []string{"sleep", "600"}},
			&container.HostConfig{Resources: container.Resources{Memory: 64 << 20, NanoCPUs: 500_000_000, PidsLimit: &pids}})
		b.start(ctx)
		checkLimits(t, b, 64<<20, 50000, 50)

		res, err := suite.docker.client.ContainerUpdate(ctx, b.id, client.ContainerUpdateOptions{
			Resources: &container.Resources{Memory: 128 << 20, MemorySwap: 256 << 20, NanoCPUs: 1_000_000_000},
		})
		if err != nil {
			t.Fatalf("update: %v", err)
		}
		t.Logf("update warnings: %v", res.Warnings)
		checkLimits(t, b, 128<<20, 100000, 50)
		swapV1, swapV2 := "memory.memsw.limit_in_bytes", "memory.swap.max"
		want := fmt.Sprint(256 << 20)
		if integration.CgroupV2() {
			want = fmt.Sprint(128 << 20) // v2 limits swap alone
		}
		if _, err := os.Stat(filepath.Join(b.c.CgroupDir("memory", b.id), swapV1)); err == nil || integration.CgroupV2() {
			if got := b.cgroupFile("memory", swapV1, swapV2); got != want {
				t.Errorf("swap limit %s, want %s", got, want)
			}
		} else {
			t.Logf("no swap accounting on this host: the swap limit is not checked")
		}

		stats, err := suite.docker.client.ContainerStats(ctx, b.id, client.ContainerStatsOptions{Stream: false})
		if err != nil {
			t.Fatalf("stats: %v", err)
		}
		defer stats.Body.Close()
		var s container.StatsResponse
		if err := json.NewDecoder(stats.Body).Decode(&s); err != nil {
			t.Fatalf("decode stats: %v", err)
		}
		if s.MemoryStats.Usage == 0 || s.MemoryStats.Limit != 128<<20 || s.PidsStats.Current < 1 || s.CPUStats.CPUUsage.TotalUsage == 0 {
			t.Errorf("stats: memory %+v pids %+v cpu %+v", s.MemoryStats, s.PidsStats, s.CPUStats.CPUUsage)
		}
	})
}

// checkLimits reads the memory, CPU quota (per 100 ms period) and pids
// limits from the container's cgroup.
func checkLimits(t *testing.T, b *box, memory, quota, pids int) {
	t.Helper()
	if got := b.cgroupFile("memory", "memory.limit_in_bytes", "memory.max"); got != fmt.Sprint(memory) {
		t.Errorf("memory limit %s, want %d", got, memory)
	}
	if integration.CgroupV2() {
		if got := b.cgroupFile("", "", "cpu.max"); got != fmt.Sprintf("%d 100000", quota) {
			t.Errorf("cpu.max %q, want \"%d 100000\"", got, quota)
		}
	} else if got := b.cgroupFile("cpu", "cpu.cfs_quota_us", ""); got != fmt.Sprint(quota) {
		t.Errorf("cpu.cfs_quota_us %s, want %d", got, quota)
	}
	if got := b.cgroupFile("pids", "pids.max", "pids.max"); got != fmt.Sprint(pids) {
		t.Errorf("pids.max %s, want %d", got, pids)
	}
}

// runOutput runs cmd in a new container to its end and returns its exit
// code and output.
func runOutput(t *testing.T, tg target, cfg *container.Config, hc *container.HostConfig) (int64, string, string) {
	t.Helper()
	ctx := caseContext(t)
	b := createBox(t, ctx, suite.docker, tg, cfg, hc)
	b.start(ctx)
	code := b.wait(ctx)
	stdout, stderr := b.logs(ctx)
	return code, stdout, stderr
}

// TestDockerReadOnlyRootfs: nothing can be written to a read-only rootfs.
func TestDockerReadOnlyRootfs(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, tg target) {
		code, stdout, stderr := runOutput(t, tg,
			&container.Config{Cmd: []string{"sh", "-c", "touch /new-file; echo touch=$?; grep ' / ' /proc/mounts"}},
			&container.HostConfig{ReadonlyRootfs: true})
		if code != 0 || !strings.Contains(stdout, "touch=1") || !strings.Contains(stderr, "Read-only file system") {
			t.Errorf("exit %d stdout %q stderr %q: want touch to fail with EROFS", code, stdout, stderr)
		}
		if !regexp.MustCompile(`(?m)^\S+ / \S+ ro[,\s]`).MatchString(stdout) {
			t.Errorf("the rootfs is not mounted read-only:\n%s", stdout)
		}
	})
}

// dockerDefaultCaps is Docker's default capability set (CHOWN, DAC_OVERRIDE,
// FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE,
// NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP), as /proc shows it.
const dockerDefaultCaps = "00000000a80425fb"

// TestDockerCapabilities: Docker's default set, and none at all with
// CapDrop ALL.
func TestDockerCapabilities(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, tg target) {
		cases := []struct {
			name string
			drop []string
			want string
		}{
			{"default", nil, dockerDefaultCaps},
			{"drop-all", []string{"ALL"}, "0000000000000000"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				_, stdout, _ := runOutput(t, tg, &container.Config{Cmd: []string{"cat", "/proc/self/status"}}, &container.HostConfig{CapDrop: tc.drop})
				caps := procStatusLines(stdout, "Cap")
				for _, k := range []string{"CapPrm", "CapEff", "CapBnd"} {
					if caps[k] != tc.want {
						t.Errorf("%s %q, want %s (all: %v)", k, caps[k], tc.want, caps)
					}
				}
				if caps["CapAmb"] != "0000000000000000" || caps["CapInh"] != "0000000000000000" {
					t.Errorf("inheritable or ambient capabilities: %v", caps)
				}
			})
		}
	})
}

// denyMkdirProfile is a custom seccomp profile: everything allowed but
// mkdir, which fails with EPERM.
const denyMkdirProfile = `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}`

// TestDockerSeccomp: Docker's default profile (unshare refused), a custom
// profile, and unconfined.
func TestDockerSeccomp(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, tg target) {
		// unshare -U needs no capability, so without a filter it works;
		// Docker's default profile refuses unshare to a process without
		// CAP_SYS_ADMIN.
		script := "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; unshare -U true; echo unshare=$?; mkdir /tmp/d; echo mkdir=$?"
		cases := []struct {
			name     string
			opt      []string
			want     []string
			wantMode string
		}{
			{"default", nil, []string{"unshare=1", "mkdir=0"}, "2"},
			{"custom", []string{"seccomp=" + denyMkdirProfile}, []string{"unshare=0", "mkdir=1"}, "2"},
			{"unconfined", []string{"seccomp=unconfined"}, []string{"unshare=0", "mkdir=0"}, "0"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				code, stdout, stderr := runOutput(t, tg, &container.Config{Cmd: []string{"sh", "-c", script}}, &container.HostConfig{SecurityOpt: tc.opt})
				if code != 0 {
					t.Fatalf("exit %d: %s %s", code, stdout, stderr)
				}
				if mode := procStatusLines(stdout, "Seccomp")["Seccomp"]; mode != tc.wantMode {
					t.Errorf("Seccomp mode %q, want %s:\n%s", mode, tc.wantMode, stdout)
				}
				for _, w := range tc.want {
					if !strings.Contains(stdout, w) {
						t.Errorf("want %s:\nstdout %s\nstderr %s", w, stdout, stderr)
					}
				}
			})
		}
	})
}

// TestDockerInit: with Init, Debian's tini (dockerd's init-path) is pid 1,
// runs the command as its child and passes its exit code on.
func TestDockerInit(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, tg target) {
		init := true
		code, stdout, stderr := runOutput(t, tg,
			&container.Config{Cmd: []string{"sh", "-c", "tr '\\0' ' ' </proc/1/cmdline; echo; echo pid=$$; exit 4"}},
			&container.HostConfig{Init: &init})
		if code != 4 {
			t.Errorf("exit code %d, want 4 (stderr %q)", code, stderr)
		}
		if !strings.HasPrefix(stdout, "/sbin/docker-init -- sh -c") || strings.Contains(stdout, "pid=1\n") {
			t.Errorf("pid 1 is not docker-init with the command as its child:\n%s", stdout)
		}
	})
}

// TestDockerUsernsRemap: a dockerd with userns-remap (a second daemon, in
// a mount namespace whose /etc holds the remap user's subordinate ids):
// the container's root is the first subordinate id, a volume file written
// by root belongs to it on the host, an exec is in the same namespace.
func TestDockerUsernsRemap(t *testing.T) {
	requireSuite(t)
	const first = 300000
	ctx := caseContext(t)
	remap, err := startDockerd(ctx, dockerdOptions{
		binary: suite.dockerd, dir: filepath.Join(suite.Dir, "r"), containerd: suite.c,
		namespace: remapNamespace, initPath: tiniPath,
		remap: &remapOptions{user: "nobody", group: "nogroup", first: first, size: 65536},
	})
	if err != nil {
		t.Fatalf("dockerd with userns-remap: %v", err)
	}
	t.Cleanup(func() {
		if err := remap.stop(); err != nil {
			t.Errorf("stop dockerd with userns-remap: %v", err)
		}
	})
	if err := loadImage(ctx, remap); err != nil {
		t.Fatal(err)
	}
	for _, rt := range suite.Runtimes {
		tg := target{runtime: rt, name: dockerRuntimeName(rt)}
		t.Run(integration.RuntimeTag(rt), func(t *testing.T) {
			if rt == integration.MiniRuntime && suite.ShimErr != nil {
				t.Fatalf("%s not available: %v", rt, suite.ShimErr)
			}
			ctx := caseContext(t)
			vol := integration.SharedDir(t, suite.Dir, "vol-", 0o777)
			// The host's network is not the remapped root's to join.
			b := createBox(t, ctx, remap, tg, &container.Config{Cmd: []string{"sleep", "600"}},
				&container.HostConfig{NetworkMode: "none", Binds: []string{vol + ":/vol"}})
			b.start(ctx)
			r := b.exec(ctx, client.ExecCreateOptions{Cmd: []string{"sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u; echo x > /vol/by-root"}})
			maps := strings.Fields(r.stdout)
			want := []string{"0", fmt.Sprint(first), "65536", "0", fmt.Sprint(first), "65536", "0"}
			if r.exitCode != 0 || strings.Join(maps, " ") != strings.Join(want, " ") {
				t.Errorf("exec: exit %d, maps and uid %q, want %q (stderr %q)", r.exitCode, maps, want, r.stderr)
			}
			r = b.exec(ctx, client.ExecCreateOptions{User: "1000:1000", Cmd: []string{"sh", "-c", "echo y > /vol/by-1000"}})
			if r.exitCode != 0 {
				t.Errorf("exec as 1000: exit %d: %s", r.exitCode, r.stderr)
			}
			for name, owner := range map[string]int{"by-root": first, "by-1000": first + 1000} {
				var st syscall.Stat_t
				if err := syscall.Stat(filepath.Join(vol, name), &st); err != nil {
					t.Errorf("volume file: %v", err)
				} else if int(st.Uid) != owner || int(st.Gid) != owner {
					t.Errorf("volume file %s is %d:%d on the host, want %d:%d", name, st.Uid, st.Gid, owner, owner)
				}
			}
			// The container's init runs as the remapped root on the host.
			if uid, err := integration.ProcStatusField(b.inspect(ctx).State.Pid, "Uid"); err != nil {
				t.Error(err)
			} else if f := strings.Fields(uid); len(f) == 0 || f[0] != fmt.Sprint(first) {
				t.Errorf("init's host uid %q, want %d", uid, first)
			}
		})
	}
}
