package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Image the suite imports into every daemon.
const (
	testImage      = "docker.io/library/minitest:latest"
	testImageCmdOK = "default-cmd /bin:/usr/bin\n"
)

// daemon is one containerd version shared by all cases.
type daemon struct {
	version Version
	c       *Containerd
	events  *EventWatcher
	err     error // why this version is unusable
	// hung maps a runtime to why it is not worth testing here: a plain
	// `ctr run` did not finish in time, so every case would only time out.
	hung map[string]error
}

// suiteState is everything TestMain prepares. It is the only package
// level state of the tests and is written once before m.Run.
type suiteState struct {
	dir      string
	rootfs   string
	image    string
	daemons  []*daemon
	runtimes []string
	shimDir  string
	shimErr  error
	keep     bool // MINI_TEST_KEEP=1: leave daemon dirs and logs for a post-mortem
}

var suite suiteState

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("integration: skipped in -short mode")
		os.Exit(0)
	}
	if os.Geteuid() != 0 {
		fmt.Println("integration: skipped, needs root")
		os.Exit(0)
	}
	code, err := runSuite(m)
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func runSuite(m *testing.M) (int, error) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "mtsuite-")
	if err != nil {
		return 1, err
	}
	suite.dir = dir
	suite.keep = os.Getenv("MINI_TEST_KEEP") == "1"
	if !suite.keep {
		defer os.RemoveAll(dir)
	}

	suite.runtimes = ListFromEnv("MINI_TEST_RUNTIMES", MiniRuntime)
	suite.rootfs = filepath.Join(dir, "rootfs")
	if err := BuildBusyboxRootfs(ctx, suite.rootfs); err != nil {
		return 1, err
	}
	before, err := Fingerprint(suite.rootfs)
	if err != nil {
		return 1, err
	}
	suite.image = filepath.Join(dir, "image.tar")
	if err := WriteOCIImage(suite.rootfs, suite.image, testImage, ImageConfig{
		Env: []string{"PATH=/bin:/usr/bin"},
		Cmd: []string{"/bin/sh", "-c", "echo default-cmd $PATH"},
	}); err != nil {
		return 1, err
	}
	for _, rt := range suite.runtimes {
		if rt == MiniRuntime {
			suite.shimDir, suite.shimErr = prepareShim(ctx, dir)
			if suite.shimErr != nil {
				fmt.Fprintf(os.Stderr, "integration: %s cases will fail: %v\n", MiniRuntime, suite.shimErr)
			}
		}
	}

	for _, name := range ListFromEnv("MINI_TEST_CONTAINERD", "1.6,2.4") {
		d := startDaemon(ctx, name)
		if d.err == nil {
			d.smokeTest(ctx)
		}
		suite.daemons = append(suite.daemons, d)
	}

	code := m.Run()

	var errs []error
	for _, d := range suite.daemons {
		if d.events != nil {
			d.events.Stop()
		}
		if d.c != nil {
			if err := d.c.Stop(ctx); err != nil {
				errs = append(errs, fmt.Errorf("stop containerd %s: %w", d.version.Name, err))
			}
		}
	}
	after, err := Fingerprint(suite.rootfs)
	if err != nil {
		errs = append(errs, err)
	} else if diff := DiffFingerprints(before, after); len(diff) > 0 {
		errs = append(errs, fmt.Errorf("containers changed the shared rootfs %s:\n%s", suite.rootfs, strings.Join(diff, "\n")))
	}
	removeNamespaceCgroups()
	return code, errors.Join(errs...)
}

// prepareShim builds the shim under test into dir/bin, or uses the binary
// named by MINI_SHIM_BIN, and returns the directory to put on PATH.
func prepareShim(ctx context.Context, dir string) (string, error) {
	if bin := os.Getenv("MINI_SHIM_BIN"); bin != "" {
		if filepath.Base(bin) != ShimBinaryName(MiniRuntime) {
			return "", fmt.Errorf("MINI_SHIM_BIN=%s: containerd looks the shim up as %s", bin, ShimBinaryName(MiniRuntime))
		}
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("MINI_SHIM_BIN: %w", err)
		}
		abs, err := filepath.Abs(bin)
		return filepath.Dir(abs), err
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	binDir := filepath.Join(dir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", err
	}
	if _, err := BuildShim(ctx, root, binDir); err != nil {
		return "", err
	}
	return binDir, nil
}

func startDaemon(ctx context.Context, name string) *daemon {
	d := &daemon{}
	v, err := LookupVersion(name)
	if err != nil {
		d.version, d.err = Version{Name: name}, err
		return d
	}
	d.version = v
	d.c, d.err = StartContainerd(ctx, Options{Version: v, ShimDir: suite.shimDir, Keep: suite.keep})
	if d.err != nil {
		return d
	}
	ictx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if d.err = d.c.ImportImage(ictx, suite.image); d.err != nil {
		return d
	}
	d.events, d.err = d.c.WatchEvents(ctx)
	return d
}

// smokeTest runs /bin/true once per runtime so that a shim that hangs
// costs one timeout instead of one per case.
func (d *daemon) smokeTest(ctx context.Context) {
	d.hung = map[string]error{}
	for _, rt := range suite.runtimes {
		if rt == MiniRuntime && suite.shimErr != nil {
			continue
		}
		id := fmt.Sprintf("smoke-%s-%s-%s", d.version.Tag(), shortName(rt), randomSuffix())
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		res := d.c.Ctr(sctx, nil, "run", "--rm", "--runtime", rt, "--rootfs", suite.rootfs, id, "/bin/true")
		cancel()
		if res.Err != nil {
			d.hung[rt] = fmt.Errorf("smoke test did not finish: %s", res)
			fmt.Fprintf(os.Stderr, "integration: %s on containerd %s hangs, its cases will fail: %s\n", rt, d.version.Name, res)
		}
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		d.c.ForceCleanup(cctx, ShimBinaryName(rt), id)
		cancel()
	}
}

// removeNamespaceCgroups removes the empty /minitest parents runc leaves in
// every hierarchy; a busy one (another suite running) stays.
func removeNamespaceCgroups() {
	roots, _ := CgroupRoots()
	for _, r := range roots {
		_ = syscall.Rmdir(filepath.Join(r, DefaultNamespace))
	}
}

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
		for _, rt := range suite.runtimes {
			tg := target{d: d, runtime: rt}
			t.Run(tg.name(), func(t *testing.T) {
				t.Parallel()
				if d.err != nil {
					t.Fatalf("containerd %s unusable: %v", d.version.Name, d.err)
				}
				if rt == MiniRuntime && suite.shimErr != nil {
					t.Fatalf("%s not available: %v", MiniRuntime, suite.shimErr)
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
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	tc := &tcase{t: t, tg: tg, c: tg.d.c, ctx: ctx, id: fmt.Sprintf("%s-%s-%s-%s", label, tg.d.version.Tag(), shortName(tg.runtime), randomSuffix())}
	shim := ShimBinaryName(tg.runtime)
	// Cleanups run last-registered first: leak check, then forced cleanup.
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		tc.c.ForceCleanup(cctx, shim, tc.id)
		cancel()
	})
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		for _, l := range tc.c.WaitNoLeaks(cctx, shim, tc.id, 5*time.Second) {
			// A case that failed half way (say `run --detach` did) is
			// expected to leave its container record; the rest is a leak.
			if l.Kind == "container" && t.Failed() {
				continue
			}
			t.Errorf("leak after %s: %s", tc.id, l)
		}
		if t.Failed() {
			tc.dumpLog()
		}
	})
	return tc
}

func shortName(runtime string) string {
	s := ShortRuntime(runtime)
	if i := strings.IndexByte(s, '.'); i > 0 {
		return s[:i]
	}
	return s
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// dumpLog logs the daemon's log lines about this container, shim logs
// included.
func (tc *tcase) dumpLog() {
	lines := tc.c.LogLines(func(l string) bool { return strings.Contains(l, tc.id) })
	if len(lines) > 80 {
		lines = lines[len(lines)-80:]
	}
	tc.t.Logf("containerd %s log lines mentioning %s:\n%s", tc.c.Version.Name, tc.id, strings.Join(lines, "\n"))
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
		args = append(args, "--rootfs", suite.rootfs)
	} else {
		args = append(args, image)
	}
	args = append(args, tc.id)
	return append(args, cmd...)
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
