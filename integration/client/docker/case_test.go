package docker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/minishim/containerd-shim-mini-v2/integration"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// target is one runtime under test, as dockerd names it.
type target struct {
	runtime string // containerd's runtime type
	name    string // HostConfig.Runtime
}

// dockerRuntimeName is the name the suite's dockerd knows runtime by: ours
// from daemon.json, runc-v2 built in.
func dockerRuntimeName(runtime string) string {
	switch runtime {
	case integration.MiniRuntime:
		return miniRuntimeName
	case integration.RuncRuntime:
		return "runc"
	}
	return runtime
}

// requireSuite fails or skips t where the suite could not set up.
func requireSuite(t *testing.T) {
	t.Helper()
	if suite.err != nil {
		t.Fatalf("suite setup: %v", suite.err)
	}
	if suite.skip != "" {
		t.Skipf("SKIPPED: dockerd cannot start here: %s", suite.skip)
	}
}

// forEachRuntime runs fn as a parallel subtest for every runtime of the
// suite.
func forEachRuntime(t *testing.T, fn func(t *testing.T, tg target)) {
	for _, rt := range suite.Runtimes {
		tg := target{runtime: rt, name: dockerRuntimeName(rt)}
		t.Run(integration.RuntimeTag(rt), func(t *testing.T) {
			t.Parallel()
			requireSuite(t)
			if rt == integration.MiniRuntime && suite.ShimErr != nil {
				t.Fatalf("%s not available: %v", rt, suite.ShimErr)
			}
			fn(t, tg)
		})
	}
}

// caseContext bounds a case.
func caseContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// box is one Docker container of a case.
type box struct {
	t  *testing.T
	d  *dockerd
	c  *integration.Containerd // seen in d's containerd namespace
	tg target
	id string
}

// createBox creates a container of the suite's image on d with tg's
// runtime and the host's network unless cfg and hc say otherwise. The
// cleanup removes it and fails t if the shim, its cgroup, mounts, sockets
// or containerd's record of it are left.
func createBox(t *testing.T, ctx context.Context, d *dockerd, tg target, cfg *container.Config, hc *container.HostConfig) *box {
	t.Helper()
	if cfg.Image == "" {
		cfg.Image = busyboxImage
	}
	if hc.Runtime == "" {
		hc.Runtime = tg.name
	}
	if hc.NetworkMode == "" {
		hc.NetworkMode = "host"
	}
	res, err := d.client.ContainerCreate(ctx, client.ContainerCreateOptions{Config: cfg, HostConfig: hc})
	if err != nil {
		t.Fatalf("create container (runtime %q): %v", hc.Runtime, err)
	}
	view := *suite.c
	view.Namespace = d.opts.namespace
	b := &box{t: t, d: d, c: &view, tg: tg, id: res.ID}
	// The harness's leak check runs after the removal, registered next.
	view.WatchCase(t, integration.ShimBinaryName(tg.runtime), b.id, suite.Rootfs, func() {})
	t.Cleanup(b.remove)
	return b
}

// remove removes the container and checks that dockerd left no mount of
// it; WatchCase checks the rest.
func (b *box) remove() {
	t := b.t
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := b.d.client.ContainerRemove(ctx, b.id, client.ContainerRemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
		t.Errorf("remove container %s: %v", b.id, err)
	}
	mounts, err := integration.MountsUnder(b.d.opts.dir)
	if err != nil {
		t.Error(err)
	}
	for _, m := range mounts {
		if strings.Contains(m, b.id) {
			t.Errorf("container %s left a mount under dockerd's dir: %s", b.id, m)
		}
	}
}

// start starts the container. runc-v2 with a runc older than 1.2 cannot
// make the time namespace dockerd asks for every container: its cases skip
// naming that.
func (b *box) start(ctx context.Context) {
	b.t.Helper()
	if err := b.tryStart(ctx); err != nil {
		b.t.Fatal(err)
	}
}

func (b *box) tryStart(ctx context.Context) error {
	b.t.Helper()
	_, err := b.d.client.ContainerStart(ctx, b.id, client.ContainerStartOptions{})
	if err != nil && b.tg.runtime == integration.RuncRuntime && strings.Contains(err.Error(), `namespace {"time" ""} does not exist`) {
		b.t.Skipf("runc-v2 here cannot run Docker's containers: dockerd asks each for a time namespace, which this runc (< 1.2) does not know: %v", err)
	}
	if err != nil {
		return fmt.Errorf("start container %s (runtime %s): %w", b.id, b.tg.name, err)
	}
	return nil
}

// waitChan registers a wait for cond; call it before what ends the
// container.
func (b *box) waitChan(ctx context.Context, cond container.WaitCondition) func() int64 {
	res := b.d.client.ContainerWait(ctx, b.id, client.ContainerWaitOptions{Condition: cond})
	return func() int64 {
		b.t.Helper()
		select {
		case r := <-res.Result:
			if r.Error != nil && r.Error.Message != "" {
				b.t.Fatalf("wait for container %s: %s", b.id, r.Error.Message)
			}
			return r.StatusCode
		case err := <-res.Error:
			b.t.Fatalf("wait for container %s: %v", b.id, err)
		case <-ctx.Done():
			b.t.Fatalf("wait for container %s: %v", b.id, ctx.Err())
		}
		return -1
	}
}

// wait waits until the container is not running and returns its exit code.
func (b *box) wait(ctx context.Context) int64 {
	b.t.Helper()
	return b.waitChan(ctx, container.WaitConditionNotRunning)()
}

func (b *box) inspect(ctx context.Context) container.InspectResponse {
	b.t.Helper()
	res, err := b.d.client.ContainerInspect(ctx, b.id, client.ContainerInspectOptions{})
	if err != nil {
		b.t.Fatalf("inspect container %s: %v", b.id, err)
	}
	return res.Container
}

// logs is the container's stdout and stderr as dockerd logged them.
func (b *box) logs(ctx context.Context) (stdout, stderr string) {
	b.t.Helper()
	rc, err := b.d.client.ContainerLogs(ctx, b.id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		b.t.Fatalf("logs of container %s: %v", b.id, err)
	}
	defer rc.Close()
	var out, errb bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &errb, rc); err != nil {
		b.t.Fatalf("logs of container %s: %v", b.id, err)
	}
	return out.String(), errb.String()
}

// execResult is what an exec printed and how it ended.
type execResult struct {
	stdout, stderr string
	exitCode       int
}

// exec runs opts.Cmd in the running container, waits for it and returns
// its output and exit code.
func (b *box) exec(ctx context.Context, opts client.ExecCreateOptions) execResult {
	b.t.Helper()
	opts.AttachStdout, opts.AttachStderr = true, true
	created, err := b.d.client.ExecCreate(ctx, b.id, opts)
	if err != nil {
		b.t.Fatalf("exec %q in %s: %v", opts.Cmd, b.id, err)
	}
	att, err := b.d.client.ExecAttach(ctx, created.ID, client.ExecAttachOptions{TTY: opts.TTY})
	if err != nil {
		b.t.Fatalf("exec %q in %s: attach: %v", opts.Cmd, b.id, err)
	}
	defer att.Close()
	var out, errb bytes.Buffer
	if opts.TTY {
		_, err = io.Copy(&out, att.Reader)
	} else {
		_, err = stdcopy.StdCopy(&out, &errb, att.Reader)
	}
	if err != nil {
		b.t.Fatalf("exec %q in %s: read output: %v", opts.Cmd, b.id, err)
	}
	// The stream ends before dockerd records the exit.
	for ctx.Err() == nil {
		ins, err := b.d.client.ExecInspect(ctx, created.ID, client.ExecInspectOptions{})
		if err != nil {
			b.t.Fatalf("exec %q in %s: inspect: %v", opts.Cmd, b.id, err)
		}
		if !ins.Running {
			return execResult{stdout: out.String(), stderr: errb.String(), exitCode: ins.ExitCode}
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.t.Fatalf("exec %q in %s: %v", opts.Cmd, b.id, ctx.Err())
	return execResult{}
}

// cgroupFile reads one file of the container's cgroup: v1File in the v1
// controller's hierarchy, or v2File in the unified one.
func (b *box) cgroupFile(v1Controller, v1File, v2File string) string {
	b.t.Helper()
	path := filepath.Join(b.c.CgroupDir(v1Controller, b.id), v1File)
	if integration.CgroupV2() {
		path = filepath.Join(b.c.CgroupDir("", b.id), v2File)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		b.t.Fatalf("container %s cgroup: %v", b.id, err)
	}
	return strings.TrimSpace(string(raw))
}

// attach attaches to the container's stdout and stderr (and stdin where
// asked) before it starts; collect returns what it printed, once its
// streams end.
func (b *box) attach(ctx context.Context, stdin bool, tty bool) (client.HijackedResponse, func() (string, string)) {
	b.t.Helper()
	res, err := b.d.client.ContainerAttach(ctx, b.id, client.ContainerAttachOptions{Stream: true, Stdin: stdin, Stdout: true, Stderr: true})
	if err != nil {
		b.t.Fatalf("attach to container %s: %v", b.id, err)
	}
	b.t.Cleanup(res.Close)
	type output struct {
		stdout, stderr string
		err            error
	}
	done := make(chan output, 1)
	go func() {
		var out, errb bytes.Buffer
		var err error
		if tty {
			_, err = io.Copy(&out, res.Reader)
		} else {
			_, err = stdcopy.StdCopy(&out, &errb, res.Reader)
		}
		done <- output{out.String(), errb.String(), err}
	}()
	return res.HijackedResponse, func() (string, string) {
		b.t.Helper()
		select {
		case o := <-done:
			if o.err != nil && !errors.Is(o.err, io.EOF) {
				b.t.Errorf("read attached streams of %s: %v", b.id, o.err)
			}
			return o.stdout, o.stderr
		case <-ctx.Done():
			b.t.Fatalf("attached streams of %s did not end: %v", b.id, ctx.Err())
		}
		return "", ""
	}
}

// procStatus is the container's /proc/self/status lines starting with
// prefix, printed by a short-lived exec-free container.
func procStatusLines(out, prefix string) map[string]string {
	fields := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.HasPrefix(k, prefix) {
			fields[k] = strings.TrimSpace(v)
		}
	}
	return fields
}
