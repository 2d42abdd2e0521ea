package integration

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Issue 9: containerd restarted, by SIGTERM and by SIGKILL, under 20
// running containers, one with an exec and one with a terminal exec whose
// ctr lose their daemon: every task is found again with its pid; exec (a
// terminal one too), kill, events and delete work afterwards; nothing is
// left. Each runs on a daemon of its own, since the suite's
// daemons serve other cases meanwhile.
func TestContainerdRestart(t *testing.T) {
	containers := 20
	if Emulated() {
		// The TCG guest: fewer, same checks.
		containers = 6
	}
	forEachTarget(t, func(t *testing.T, tg target) {
		for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
			t.Run(strings.ToLower(sig.String()[:4]), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
				t.Cleanup(cancel)
				own := ownDaemon(ctx, t, tg)
				c := own.d.c
				var cases []*tcase
				pids := map[string]string{}
				for i := 0; i < containers; i++ {
					tc := newCase(t, own, fmt.Sprintf("restart%d", i))
					pids[tc.id] = tc.startDetached("/bin/sleep", "1000")
					cases = append(cases, tc)
				}
				// An exec whose ctr is attached when the daemon goes.
				lost := cases[0].background("", cases[0].execArgs(nil, "held", "/bin/sleep", "1000")...)
				cases[0].execPsPid("held")
				// And a terminal one, on a pty of the test's.
				tty := cases[1].startPty(cases[1].execArgs([]string{"-t"}, "tty", "/bin/sh")...)
				cases[1].execPsPid("tty")

				if err := c.Restart(ctx, sig); err != nil {
					t.Fatal(err)
				}
				if res := cases[0].await(lost); res.ExitCode == 0 {
					t.Errorf("the exec's ctr lost its daemon, yet exited 0:\n%s", res)
				}
				cases[0].bg = nil
				events, err := c.WatchEvents(ctx)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(events.Stop)
				own.d.events = events

				for _, tc := range cases {
					if got := tc.waitStatus("RUNNING"); got != pids[tc.id] {
						t.Errorf("%s: pid %s after the restart, %s before", tc.id, got, pids[tc.id])
					}
					if res := tc.exec("after", "/bin/sh", "-c", "echo alive"); res.ExitCode != 0 || res.Stdout != "alive\n" {
						t.Errorf("exec into %s after the restart: %s", tc.id, res)
					}
				}
				// The terminal's ctr lost its daemon too; a new terminal exec
				// works.
				select {
				case <-tty.exited:
				case <-time.After(30 * time.Second):
					t.Errorf("the terminal exec's ctr did not end with its daemon")
				}
				again := cases[1].startPty(cases[1].execArgs([]string{"-t"}, "tty2", "/bin/sh", "-c", "echo tty-ok")...)
				select {
				case <-again.exited:
				case <-time.After(30 * time.Second):
					t.Fatalf("terminal exec after the restart did not end")
				}
				if !strings.Contains(again.output(), "tty-ok") {
					t.Errorf("terminal exec after the restart printed %q", again.output())
				}
				// The exec from before the restart can be killed, unless it
				// ended with its ctr (containerd 2.4's orderly stop ends it,
				// with either runtime).
				if res := cases[0].ctr("", "tasks", "kill", "--exec-id", "held", "--signal", "SIGKILL", cases[0].id); res.ExitCode != 0 && !strings.Contains(res.Stderr, "not found") {
					t.Errorf("kill the exec from before the restart: %s", res)
				}
				// Events still flow: an exit after the restart is published.
				last := cases[len(cases)-1]
				if res := last.ctr("", "tasks", "kill", "--signal", "SIGKILL", last.id); res.ExitCode != 0 {
					t.Fatalf("kill %s: %s", last.id, res)
				}
				wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
				_, err = events.WaitTopics(wctx, c.Namespace, last.id, "/tasks/exit")
				wcancel()
				if err != nil {
					t.Errorf("no /tasks/exit for %s after the restart: %v", last.id, err)
				}
				// The cases' cleanups delete the tasks and containers, then
				// check that nothing is left.
			})
		}
	})
}

// ownDaemon is tg on a containerd of its own, for a case that restarts
// it (the suite's daemons serve other cases meanwhile). Its stop is
// registered before the case's containers, so it runs after their own
// removal and leak checks.
func ownDaemon(ctx context.Context, t *testing.T, tg target) target {
	t.Helper()
	return ownDaemonIn(ctx, t, tg, suite.ShimDir)
}

// ownDaemonIn is ownDaemon with the shims of shimDir.
func ownDaemonIn(ctx context.Context, t *testing.T, tg target, shimDir string) target {
	t.Helper()
	c, err := StartContainerd(ctx, Options{Version: tg.d.version, ShimDir: shimDir, Keep: suite.Keep})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return target{d: &daemon{version: tg.d.version, c: c}, runtime: tg.runtime}
}
