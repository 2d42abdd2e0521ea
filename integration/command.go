package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// DefaultCommandTimeout bounds every command that has no deadline of its own.
const DefaultCommandTimeout = 60 * time.Second

// Result is what one finished command produced.
type Result struct {
	Args     []string
	Stdout   string
	Stderr   string
	ExitCode int // -1 when the command did not exit on its own
	Err      error
	Duration time.Duration
}

// String renders the result for test failure messages.
func (r Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "$ %s\nexit code %d after %s", strings.Join(r.Args, " "), r.ExitCode, r.Duration.Round(time.Millisecond))
	if r.Err != nil {
		fmt.Fprintf(&b, " (error: %v)", r.Err)
	}
	fmt.Fprintf(&b, "\nstdout: %q\nstderr: %q", clip(r.Stdout, 2000), clip(r.Stderr, 2000))
	return b.String()
}

// Combined is stdout and stderr, for asserting on messages.
func (r Result) Combined() string { return r.Stdout + r.Stderr }

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("...(%d more bytes)", len(s)-n)
}

// Run runs a command with its own process group and a deadline: when ctx
// ends (or DefaultCommandTimeout passes without a ctx deadline) the whole
// group is SIGKILLed. SIGTERM is not enough: `ctr run` forwards it to the
// container, whose pid 1 usually ignores it.
func Run(ctx context.Context, stdin io.Reader, env []string, name string, args ...string) Result {
	return RunIn(ctx, "", stdin, env, name, args...)
}

// RunIn is Run with working directory dir ("" for the current one).
func RunIn(ctx context.Context, dir string, stdin io.Reader, env []string, name string, args ...string) Result {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultCommandTimeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	// A grandchild holding our pipes must not keep Wait from returning.
	cmd.WaitDelay = 5 * time.Second

	start := time.Now()
	err := cmd.Run()
	res := Result{
		Args:     append([]string{name}, args...),
		Stdout:   stdout.String(),
		Stderr:   stderr.String(),
		ExitCode: -1,
		Duration: time.Since(start),
	}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		res.ExitCode = 0
	case errors.As(err, &exitErr) && exitErr.Exited():
		res.ExitCode = exitErr.ExitCode()
	default:
		res.Err = err
	}
	if ctx.Err() != nil {
		res.Err = fmt.Errorf("killed after %s: %w", res.Duration.Round(time.Millisecond), ctx.Err())
		res.ExitCode = -1
	}
	return res
}

// RandomSuffix makes container ids unique across runs and daemons.
func RandomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
