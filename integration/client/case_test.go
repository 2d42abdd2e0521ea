package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/minishim/containerd-shim-mini-v2/integration"
)

// target is one (containerd version, runtime) pair a case runs against.
type target struct {
	d       *daemon
	runtime string
}

func (tg target) name() string {
	return tg.d.version.Name + "/" + integration.ShortRuntime(tg.runtime)
}

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
				if rt == integration.MiniRuntime && suite.ShimErr != nil {
					t.Fatalf("%s not available: %v", rt, suite.ShimErr)
				}
				fn(t, tg)
			})
		}
	}
}

// tcase is one container of a case: a unique id, a deadline, the daemon's
// Go client and cleanups that check for leaks, then remove what is left.
type tcase struct {
	t      *testing.T
	tg     target
	c      *integration.Containerd
	client *containerd.Client
	id     string
	ctx    context.Context // carries the daemon's namespace
}

// newCase makes a container id unique across daemons (runc's state dir and
// the cgroup tree are shared between them) and registers the leak check.
func newCase(t *testing.T, tg target, label string) *tcase {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	tc := &tcase{
		t:      t,
		tg:     tg,
		c:      tg.d.c,
		client: tg.d.client,
		id:     fmt.Sprintf("client-%s-%s-%s-%s", label, tg.d.version.Tag(), integration.RuntimeTag(tg.runtime), integration.RandomSuffix()),
	}
	// The client's default namespace covers its own calls; the spec
	// generator reads the namespace from the context (for cgroupsPath).
	tc.ctx = namespaces.WithNamespace(ctx, tc.c.Namespace)
	// The case's own orderly removal (registered later, by start) runs
	// before the watch's checks.
	tc.c.WatchCase(t, integration.ShimBinaryName(tg.runtime), tc.id, suite.Rootfs, cancel)
	return tc
}

// callCtx bounds one client call; none may take over 30s.
func (tc *tcase) callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(tc.ctx, 30*time.Second)
}

// started is a running task of the case's container, with the channel its
// exit status arrives on.
type started struct {
	container containerd.Container
	task      containerd.Task
	exit      <-chan containerd.ExitStatus
}

// start creates the case's container on the shared busybox rootfs (read
// only: cases must not change it) with the spec ctr run would make plus
// specOpts, creates its task with stdio from ioc and starts it. The cleanup
// it registers runs before the leak check and removes task and container
// as a client would.
func (tc *tcase) start(ioc cio.Creator, specOpts ...oci.SpecOpts) *started {
	tc.t.Helper()
	return tc.startWithOptions(nil, ioc, specOpts...)
}

// startWithOptions is start with runtime options (nil: none) for the
// container.
func (tc *tcase) startWithOptions(runtimeOpts any, ioc cio.Creator, specOpts ...oci.SpecOpts) *started {
	tc.t.Helper()
	ctx, cancel := tc.callCtx()
	defer cancel()
	// The client's default spec as it is: unlike ctr's, it denies every
	// device in the cgroup, and the runtime's standard devices must still
	// work (TestClientStandardDevices).
	opts := append([]oci.SpecOpts{oci.WithRootFSPath(suite.Rootfs), oci.WithRootFSReadonly()}, specOpts...)
	cont, err := tc.client.NewContainer(ctx, tc.id,
		containerd.WithRuntime(tc.tg.runtime, runtimeOpts),
		containerd.WithNewSpec(opts...))
	if err != nil {
		tc.t.Fatalf("new container %s: %v", tc.id, err)
	}
	// A pointer: the cleanup sees the task once there is one.
	s := &started{container: cont}
	tc.t.Cleanup(func() { tc.remove(s) })
	if s.task, err = cont.NewTask(ctx, ioc); err != nil {
		tc.t.Fatalf("new task %s: %v", tc.id, err)
	}
	// Wait before Start, so that an early exit is not missed. Its context
	// is the case's: the channel must outlive this call.
	if s.exit, err = s.task.Wait(tc.ctx); err != nil {
		tc.t.Fatalf("wait on task %s: %v", tc.id, err)
	}
	if err := s.task.Start(ctx); err != nil {
		tc.t.Fatalf("start task %s: %v", tc.id, err)
	}
	return s
}

// remove kills and deletes the task (if any) and deletes the container;
// what is already gone is fine. Errors are the case's: an orderly removal
// must work.
func (tc *tcase) remove(s *started) {
	// A fresh context: the case's may be spent by now.
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), tc.c.Namespace), time.Minute)
	defer cancel()
	if s.task != nil {
		if _, err := s.task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			tc.t.Errorf("delete task %s: %v", tc.id, err)
			// Delete closes the task's stdio only when it succeeds.
			if io := s.task.IO(); io != nil {
				io.Cancel()
				_ = io.Close()
			}
		}
	}
	if err := s.container.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
		tc.t.Errorf("delete container %s: %v", tc.id, err)
	}
}

// kill sends SIGKILL to the task and waits for its exit status.
func (tc *tcase) kill(s *started) containerd.ExitStatus {
	tc.t.Helper()
	ctx, cancel := tc.callCtx()
	defer cancel()
	if err := s.task.Kill(ctx, syscall.SIGKILL); err != nil {
		tc.t.Fatalf("kill task %s: %v", tc.id, err)
	}
	select {
	case st := <-s.exit:
		return st
	case <-ctx.Done():
		tc.t.Fatalf("task %s did not exit after SIGKILL: %v", tc.id, ctx.Err())
		return containerd.ExitStatus{}
	}
}

// cgroupFile reads one control file of the case's container cgroup.
func (tc *tcase) cgroupFile(v1Controller, name string) string {
	tc.t.Helper()
	v, err := readCgroupFile(tc.c.CgroupDir(v1Controller, tc.id), name)
	if err != nil {
		tc.t.Fatal(err)
	}
	return v
}

func readCgroupFile(dir, name string) (string, error) {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return "", fmt.Errorf("read cgroup file: %w", err)
	}
	return strings.TrimSpace(string(data)), nil
}

// errClass is the errdefs class an error is expected to carry once the
// client has turned the grpc status back into a Go error.
type errClass struct {
	name string
	is   func(error) bool
}

var (
	invalidArgument    = errClass{"InvalidArgument", errdefs.IsInvalidArgument}
	failedPrecondition = errClass{"FailedPrecondition", errdefs.IsFailedPrecondition}
	// unknown is what a shim answers with a plain error: no class at all.
	unknown = errClass{"Unknown", errdefs.IsUnknown}
)

// classOf names the errdefs class of err, for messages.
func classOf(err error) string {
	for _, c := range []errClass{
		invalidArgument, failedPrecondition, unknown,
		{"NotFound", errdefs.IsNotFound},
		{"NotImplemented", errdefs.IsNotImplemented},
		{"Internal", errdefs.IsInternal},
		{"DeadlineExceeded", func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }},
	} {
		if c.is(err) {
			return c.name
		}
	}
	return "other"
}

// syncBuffer collects a task's output; cio copies into it from its own
// goroutines while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls until the output contains s, for up to d, and says
// whether it does.
func (b *syncBuffer) waitFor(s string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !strings.Contains(b.String(), s) {
		if !time.Now().Before(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// outputTo is stdio with stdout and stderr both into out, its fifos in the
// suite's directory.
func outputTo(out *syncBuffer) cio.Creator {
	return cio.NewCreator(cio.WithStreams(nil, out, out), cio.WithFIFODir(suite.fifoDir))
}
