package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// target is one (containerd version, runtime) pair a case runs against.
type target struct {
	d       *daemon
	runtime string
}

func (tg target) name() string { return tg.d.version.Name + "/" + ShortRuntime(tg.runtime) }

// forEachTarget runs fn as a parallel subtest for every containerd version
// and runtime of the suite.
func forEachTarget(t *testing.T, fn func(t *testing.T, tg target)) {
	for _, d := range suite.daemons {
		for _, rt := range suite.Runtimes {
			tg := target{d: d, runtime: rt}
			t.Run(tg.name(), func(t *testing.T) {
				t.Parallel()
				if d.err != nil {
					t.Fatalf("containerd %s unusable: %v", d.version.Name, d.err)
				}
				if rt == MiniRuntime && suite.ShimErr != nil {
					t.Fatalf("%s not available: %v", MiniRuntime, suite.ShimErr)
				}
				if err := d.hung[rt]; err != nil {
					t.Fatalf("%s on containerd %s: %v", rt, d.version.Name, err)
				}
				fn(t, tg)
			})
		}
	}
}

// tcase is one container of a case: a unique id, a deadline, and cleanups
// that check for leaks and then remove whatever is left.
type tcase struct {
	t   *testing.T
	tg  target
	c   *Containerd
	id  string
	ctx context.Context
	// bg is the result of the `ctr run` started by background, if any, so
	// waits can stop as soon as it ended.
	bg <-chan Result
}

// newCase makes a container id unique across daemons (runc's state dir and
// the cgroup tree are shared between them) and registers its cleanups.
func newCase(t *testing.T, tg target, label string) *tcase {
	t.Helper()
	return newCaseIn(t, tg, tg.d.c, fmt.Sprintf("%s-%s-%s-%s", label, tg.d.version.Tag(), RuntimeTag(tg.runtime), RandomSuffix()))
}

// newCaseIn is a case of container id driven through c: tg's daemon seen
// from another namespace, say.
func newCaseIn(t *testing.T, tg target, c *Containerd, id string) *tcase {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	tc := &tcase{t: t, tg: tg, c: c, ctx: ctx, id: id}
	tc.c.WatchCase(t, ShimBinaryName(tg.runtime), tc.id, suite.Rootfs, cancel)
	return tc
}

// ctr runs ctr against the case's daemon; no call may take over a minute.
func (tc *tcase) ctr(stdin string, args ...string) Result {
	ctx, cancel := context.WithTimeout(tc.ctx, time.Minute)
	defer cancel()
	if stdin == "" {
		return tc.c.Ctr(ctx, nil, args...)
	}
	return tc.c.Ctr(ctx, strings.NewReader(stdin), args...)
}

// runArgs builds `ctr run` arguments: flags, then the shared rootfs (or
// image), the id and the command.
func (tc *tcase) runArgs(flags []string, image string, cmd ...string) []string {
	args := append([]string{"run", "--runtime", tc.tg.runtime}, flags...)
	if image == "" {
		args = append(args, "--rootfs", suite.Rootfs)
	} else {
		args = append(args, image)
	}
	args = append(args, tc.id)
	return append(args, cmd...)
}

// ctrFails runs ctr with args, which must fail on its own (not by timeout)
// with an error holding every one of want, and logs what the runtime said.
func (tc *tcase) ctrFails(args []string, want ...string) Result {
	tc.t.Helper()
	res := tc.ctr("", args...)
	if res.ExitCode == 0 || res.Err != nil {
		tc.t.Fatalf("want ctr to fail on its own:\n%s", res)
	}
	for _, w := range want {
		if !strings.Contains(res.Stderr, w) {
			tc.t.Errorf("error should contain %q:\n%s", w, res)
		}
	}
	tc.t.Logf("%s on containerd %s says: %s", tc.tg.runtime, tc.tg.d.version.Name, strings.TrimSpace(res.Stderr))
	return res
}

// run is `ctr run --rm` of cmd in the shared rootfs.
func (tc *tcase) run(stdin string, cmd ...string) Result {
	return tc.ctr(stdin, tc.runArgs([]string{"--rm"}, "", cmd...)...)
}

// lossyEvents: with containerd 2.x the shim alone publishes /tasks/exit
// and /tasks/delete, and runc's 2.4 shim sometimes loses one (it exits on
// Shutdown without draining its queue) or delivers delete before exit.
// Only there is that tolerated; every other pair must deliver all four
// events in order.
func (tg target) lossyEvents() bool {
	return tg.runtime == RuncRuntime && tg.d.version.Name != "1.6"
}

// lifecycle waits for the container's task events and checks they are
// create, start, exit (with wantExit), delete, in that order, with one pid.
func (tc *tcase) lifecycle(wantExit int) {
	tc.t.Helper()
	wait := 10 * time.Second
	if tc.tg.lossyEvents() {
		wait = 3 * time.Second
	}
	ctx, cancel := context.WithTimeout(tc.ctx, wait)
	defer cancel()
	evs, err := tc.tg.d.events.WaitTopics(ctx, tc.c.Namespace, tc.id, "/tasks/delete")
	// Late events would be out of order; give them a moment to show.
	time.Sleep(200 * time.Millisecond)
	evs = tc.tg.d.events.Events(func(e Event) bool {
		return e.Namespace == tc.c.Namespace && e.ContainerID() == tc.id && strings.HasPrefix(e.Topic, "/tasks/")
	})
	want := []string{"/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"}
	got := Topics(evs)
	ok := strings.Join(got, " ") == strings.Join(want, " ")
	if !ok && tc.tg.lossyEvents() && sloppyLifecycle(got) {
		tc.t.Logf("known %s event loss or reordering on containerd %s: got %v", tc.tg.runtime, tc.c.Version.Name, got)
		ok = true
	}
	if !ok {
		tc.t.Errorf("task events of %s: got %v (wait: %v), want %v\n%s", tc.id, got, err, want, rawEvents(evs))
		return
	}
	pid := evs[0].Payload["pid"]
	for _, e := range evs {
		if e.Payload["pid"] != pid {
			tc.t.Errorf("pids differ between task events:\n%s", rawEvents(evs))
			break
		}
		if e.Topic != "/tasks/exit" {
			continue
		}
		if got := e.ExitStatus(); got != wantExit {
			tc.t.Errorf("/tasks/exit exit_status = %d, want %d\n%s", got, wantExit, e.Raw)
		}
		if e.Payload["id"] != tc.id {
			tc.t.Errorf("/tasks/exit id = %v, want the container id %s\n%s", e.Payload["id"], tc.id, e.Raw)
		}
	}
}

// sloppyLifecycle accepts create and start followed by exit and delete in
// any order, either possibly missing, none repeated.
func sloppyLifecycle(got []string) bool {
	if len(got) < 2 || got[0] != "/tasks/create" || got[1] != "/tasks/start" {
		return false
	}
	seen := map[string]bool{}
	for _, topic := range got[2:] {
		if (topic != "/tasks/exit" && topic != "/tasks/delete") || seen[topic] {
			return false
		}
		seen[topic] = true
	}
	return true
}

func rawEvents(evs []Event) string {
	var b strings.Builder
	for _, e := range evs {
		b.WriteString(e.Raw + "\n")
	}
	return b.String()
}

// waitStatus polls `ctr tasks list` until the task's status is want and
// returns its pid column.
func (tc *tcase) waitStatus(want string) string {
	tc.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last Result
	for time.Now().Before(deadline) && tc.ctx.Err() == nil {
		tc.checkBackground("its status became " + want)
		last = tc.ctr("", "tasks", "list")
		for _, line := range strings.Split(last.Stdout, "\n") {
			f := strings.Fields(line)
			if len(f) == 3 && f[0] == tc.id && f[2] == want {
				return f[1]
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	tc.t.Fatalf("task %s never became %s:\n%s", tc.id, want, last)
	return ""
}

// background starts a ctr command and returns a channel with its result.
func (tc *tcase) background(stdin string, args ...string) <-chan Result {
	ch := make(chan Result, 1)
	go func() { ch <- tc.ctr(stdin, args...) }()
	tc.bg = ch
	return ch
}

// checkBackground fails the case if the background command already ended.
func (tc *tcase) checkBackground(before string) {
	tc.t.Helper()
	if tc.bg == nil {
		return
	}
	select {
	case r := <-tc.bg:
		tc.t.Fatalf("ctr ended before %s:\n%s", before, r)
	default:
	}
}

// await waits for a background command, failing the case on timeout.
func (tc *tcase) await(ch <-chan Result) Result {
	tc.t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(60 * time.Second):
		tc.t.Fatalf("ctr did not return within 60s")
		return Result{}
	}
}
