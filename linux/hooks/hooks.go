// Package hooks runs OCI lifecycle hooks: each hook's program with the
// container's state JSON on its stdin, its args and env, a timeout, and
// its output kept to explain a failure. Which hooks run where and when is
// the caller's (linux/): the shim runs prestart, createRuntime, poststart
// and poststop; the container's init runs createContainer and
// startContainer.
package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/minishim/containerd-shim-mini-v2/process"
)

// Starter starts cmd and delivers its exit status (the exit code, or 128
// plus the signal). The shim's reaper provides it there; a process without
// a reaper uses Direct.
type Starter func(cmd *exec.Cmd) (<-chan int, error)

// Options say how the hooks of one kind run.
type Options struct {
	Start Starter
	// Dir is the hooks' working directory; "" keeps the caller's.
	Dir string
	// Env is the environment of a hook whose spec gives none.
	Env []string
}

// outputKept bounds how much of a hook's stdout and stderr an error
// quotes.
const outputKept = 4096

// outputGrace bounds the wait for a hook's output once it exited: a
// daemon it left behind may hold the pipes open.
const outputGrace = time.Second

// Validate checks the hooks of a spec: absolute paths, positive timeouts.
func Validate(h *specs.Hooks) error {
	if h == nil {
		return nil
	}
	for _, k := range kinds(h) {
		for i, hook := range k.list {
			field := fmt.Sprintf("hooks.%s[%d]", k.name, i)
			if !filepath.IsAbs(hook.Path) {
				return fmt.Errorf("config.json: %s.path %q is not an absolute path: %w", field, hook.Path, errdefs.ErrInvalidArgument)
			}
			if hook.Timeout != nil && *hook.Timeout <= 0 {
				return fmt.Errorf("config.json: %s.timeout %d is not a positive number of seconds: %w", field, *hook.Timeout, errdefs.ErrInvalidArgument)
			}
		}
	}
	return nil
}

type kind struct {
	name string
	list []specs.Hook
}

// Names are the kinds of hook, in the order of a container's life.
func Names() []string {
	var out []string
	for _, k := range kinds(&specs.Hooks{}) {
		out = append(out, k.name)
	}
	return out
}

func kinds(h *specs.Hooks) []kind {
	return []kind{
		{"prestart", h.Prestart}, {"createRuntime", h.CreateRuntime}, {"createContainer", h.CreateContainer},
		{"startContainer", h.StartContainer}, {"poststart", h.Poststart}, {"poststop", h.Poststop},
	}
}

// Run runs hooks (of kind name, e.g. "prestart") in order, each with state
// on stdin, and stops at the first that fails. A hook still running when
// ctx ends is killed (with what it started).
func Run(ctx context.Context, name string, list []specs.Hook, state *specs.State, opts Options) error {
	if len(list) == 0 {
		return nil
	}
	data, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("hooks.%s: container state: %w", name, err)
	}
	for i, h := range list {
		if err := runOne(ctx, h, data, opts); err != nil {
			return fmt.Errorf("hooks.%s[%d] %s: %w", name, i, h.Path, err)
		}
	}
	return nil
}

func runOne(ctx context.Context, h specs.Hook, state []byte, opts Options) error {
	args := h.Args
	if len(args) == 0 {
		args = []string{h.Path}
	}
	env := h.Env
	if len(env) == 0 {
		env = opts.Env
	}
	if env == nil {
		// exec.Cmd takes nil as "inherit ours".
		env = []string{}
	}
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer stdinR.Close()
	defer stdinW.Close()
	stdout, err := newCapture()
	if err != nil {
		return err
	}
	defer stdout.close()
	stderr, err := newCapture()
	if err != nil {
		return err
	}
	defer stderr.close()

	cmd := &exec.Cmd{
		Path: h.Path, Args: args, Env: env, Dir: opts.Dir, Stdin: stdinR, Stdout: stdout.w, Stderr: stderr.w,
		// A group of its own, so a timeout kills what the hook started too.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	exited, err := opts.Start(cmd)
	stdinR.Close()
	stdout.closeWriter()
	stderr.closeWriter()
	if err != nil {
		return err
	}
	// A hook that never reads its stdin must not block us: the write
	// ends when it exits (EPIPE), and the state is small.
	go func() {
		_, _ = stdinW.Write(state)
		stdinW.Close()
	}()

	var timeout <-chan time.Time
	if h.Timeout != nil {
		timer := time.NewTimer(time.Duration(*h.Timeout) * time.Second)
		defer timer.Stop()
		timeout = timer.C
	}
	// Not yet reaped (its status is still to come), so the pid, and the
	// group named after it, are still this hook's.
	kill := func() {
		_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		<-exited
	}
	var status int
	select {
	case status = <-exited:
	case <-timeout:
		kill()
		return fmt.Errorf("ran past its timeout of %ds and was killed", *h.Timeout)
	case <-ctx.Done():
		kill()
		return fmt.Errorf("killed: %w", ctx.Err())
	}
	if status == 0 {
		return nil
	}
	return fmt.Errorf("exit status %d, stdout: %q, stderr: %q", status, stdout.text(), stderr.text())
}

// capture keeps the start of what a hook writes to one of its pipes.
type capture struct {
	r, w *os.File
	mu   sync.Mutex
	buf  bytes.Buffer
	done chan struct{}
}

func newCapture() (*capture, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	c := &capture{r: r, w: w, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		b := make([]byte, 4096)
		for {
			n, err := c.r.Read(b)
			c.mu.Lock()
			if room := outputKept - c.buf.Len(); room > 0 {
				c.buf.Write(b[:min(n, room)])
			}
			c.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return c, nil
}

func (c *capture) closeWriter() { c.w.Close() }

// text is what the hook wrote, once it closed the pipe or the grace ran
// out.
func (c *capture) text() string {
	select {
	case <-c.done:
	case <-time.After(outputGrace):
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.TrimSpace(c.buf.String())
}

func (c *capture) close() {
	c.w.Close()
	c.r.Close()
}

// Direct starts cmd and waits for it in a goroutine: for a process that
// has no reaper of its own (the container's init, `delete` after a crash).
func Direct(cmd *exec.Cmd) (<-chan int, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ch := make(chan int, 1)
	go func() {
		_ = cmd.Wait() // the status, if any, is in ProcessState
		status := -1
		if cmd.ProcessState != nil {
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
				if st, ended := process.StatusOf(ws); ended {
					status = st
				}
			}
		}
		ch <- status
	}()
	return ch, nil
}
