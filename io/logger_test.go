package io

import (
	"context"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// shLogger is a binary:// URI that runs script under /bin/sh. Query keys
// become "key value" arguments in key order, so "-c" (sorted first) carries
// the script and a=..., b=... arrive as $0=a $1=... $2=b $3=...; using
// /bin/sh itself avoids executing a freshly written file.
func shLogger(scheme, script string, files ...string) string {
	q := url.Values{"-c": {script}}
	for i, f := range files {
		q.Set(string(rune('a'+i)), f)
	}
	return scheme + ":///bin/sh?" + q.Encode()
}

// A logger in the containerd convention: fd 3 is the child's stdout, fd 4
// its stderr, closing fd 5 says ready. $1: stdout log, $3: stderr log,
// $5: environment dump.
const catLogger = `echo "$CONTAINER_ID $CONTAINER_NAMESPACE" >"$5"; exec 5>&-; cat <&3 >"$1" & cat <&4 >"$3"; wait`

func waitFile(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		got, err := os.ReadFile(path)
		if err == nil && string(got) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: got %q (%v), want %q", path, got, err, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBinaryLogger(t *testing.T) {
	tests := []struct {
		name   string
		scheme string
		script string
		hook   bool
	}{
		{name: "binary", scheme: "binary", script: catLogger},
		{name: "binary-v2 signals with a byte", scheme: "binary-v2", script: "printf x >&5; " + catLogger},
		{name: "started through a StartFunc", scheme: "binary", script: catLogger, hook: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fds, gs := countFDs(t), runtime.NumGoroutine()
			dir := t.TempDir()
			out, errLog, env := filepath.Join(dir, "out"), filepath.Join(dir, "err"), filepath.Join(dir, "env")
			uri := shLogger(tc.scheme, tc.script, out, errLog, env)
			cfg := Config{Stdout: uri, Stderr: uri, ContainerID: "c1", Namespace: "ns1"}
			started := 0
			if tc.hook {
				cfg.StartLogger = func(cmd *exec.Cmd) (<-chan struct{}, error) {
					started++
					return startAndWait(cmd)
				}
			}
			p, err := New(context.Background(), cfg, -1, -1)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer p.Close()
			c := spawn(t, p, "echo out; echo err >&2")
			c.wait(t)
			waitIO(t, p)
			waitFile(t, out, "out\n")
			waitFile(t, errLog, "err\n")
			waitFile(t, env, "c1 ns1\n")
			closeTwice(t, p)
			if tc.hook && started != 1 {
				t.Errorf("StartLogger called %d times, want 1", started)
			}
			settled(t, fds, gs)
		})
	}
}

func TestBinaryLoggerFailures(t *testing.T) {
	tests := []struct {
		name    string
		scheme  string
		script  string
		timeout time.Duration
		check   func(error) bool
	}{
		{
			name: "binary-v2 exits without signalling", scheme: "binary-v2", script: "exit 0",
			check: errdefs.IsFailedPrecondition,
		},
		{
			name: "never ready", scheme: "binary", script: "exec sleep 10", timeout: 200 * time.Millisecond,
			check: func(err error) bool { return errors.Is(err, context.DeadlineExceeded) },
		},
		{
			name: "missing binary", scheme: "binary", script: "",
			check: func(err error) bool { return errors.Is(err, os.ErrNotExist) },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fds, gs := countFDs(t), runtime.NumGoroutine()
			uri := shLogger(tc.scheme, tc.script)
			if tc.script == "" {
				uri = tc.scheme + ":///nonexistent/logger"
			}
			ctx := context.Background()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			start := time.Now()
			p, err := New(ctx, Config{Stdout: uri, Namespace: "ns"}, -1, -1)
			if err == nil {
				p.Close()
				t.Fatal("New succeeded")
			}
			if !tc.check(err) {
				t.Errorf("wrong error: %v", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("New took %v", d)
			}
			// The logger was killed and reaped: its goroutine is gone.
			settled(t, fds, gs)
		})
	}
}

func TestBinaryLoggerStop(t *testing.T) {
	tests := []struct {
		name   string
		script string
	}{
		// Holds on after EOF: Close's SIGTERM ends it.
		{name: "stops on SIGTERM", script: "exec 5>&-; exec sleep 10"},
		// Ignores SIGTERM (ignored signals survive exec): killed after the grace.
		{name: "killed after the grace", script: "trap '' TERM; exec 5>&-; exec sleep 10"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(context.Background(), Config{Stdout: shLogger("binary", tc.script), Namespace: "ns"}, -1, -1)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			p.logger.grace = 200 * time.Millisecond
			p.CloseChildEnds()
			start := time.Now()
			closeTwice(t, p)
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Close took %v", d)
			}
			select {
			case <-p.logger.exited:
			default:
				t.Error("logger still running after Close")
			}
		})
	}
}
