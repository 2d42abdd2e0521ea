package io

import (
	"context"
	goio "io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const testTimeout = 5 * time.Second

func mkfifo(t *testing.T, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatalf("mkfifo %s: %v", path, err)
	}
	return path
}

type readResult struct {
	data []byte
	err  error
}

// readFifo plays containerd's side of an output fifo: it opens it for
// reading in the background and reads it to EOF.
func readFifo(path string) <-chan readResult {
	ch := make(chan readResult, 1)
	go func() {
		f, err := os.OpenFile(path, os.O_RDONLY, 0)
		if err != nil {
			ch <- readResult{err: err}
			return
		}
		defer f.Close()
		b, err := goio.ReadAll(f)
		ch <- readResult{data: b, err: err}
	}()
	return ch
}

func recvRead(t *testing.T, name string, ch <-chan readResult) string {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("read %s: %v", name, r.err)
		}
		return string(r.data)
	case <-time.After(testTimeout):
		t.Fatalf("read %s: no EOF after %v", name, testTimeout)
		return ""
	}
}

// child is a process run with a Pipes' ChildFiles, or with a pty slave as
// its controlling terminal (spawnTTY).
type child struct {
	cmd    *exec.Cmd
	exited chan error
	// session: the child leads a session (its pid is the process group),
	// which kill ends whole.
	session bool
}

// spawn runs script under /bin/sh with p's child files and starts p, the
// way the spawner and task service will.
func spawn(t *testing.T, p *Pipes, script string) *child {
	t.Helper()
	stdin, stdout, stderr := p.ChildFiles()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	if err := cmd.Start(); err != nil {
		p.CloseChildEnds()
		t.Fatalf("start %q: %v", script, err)
	}
	p.Start()
	c := &child{cmd: cmd, exited: make(chan error, 1)}
	go func() { c.exited <- cmd.Wait() }()
	// Leave no process behind when a test failed early.
	t.Cleanup(c.kill)
	return c
}

// kill ends the child (its whole session, if it leads one) and waits for
// it; it is idempotent.
func (c *child) kill() {
	if c.session {
		unix.Kill(-c.cmd.Process.Pid, unix.SIGKILL)
	} else {
		c.cmd.Process.Kill()
	}
	err := <-c.exited
	c.exited <- err
}

// openStdin plays the client's side of the stdin fifo.
func openStdin(t *testing.T, path string) *os.File {
	t.Helper()
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("open stdin fifo: %v", err)
	}
	return w
}

func (c *child) wait(t *testing.T) {
	t.Helper()
	select {
	case err := <-c.exited:
		c.exited <- err
		if err != nil {
			t.Fatalf("child: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatalf("child did not exit after %v", testTimeout)
	}
}

// running reports whether the child is still running after d.
func (c *child) running(d time.Duration) bool {
	select {
	case err := <-c.exited:
		c.exited <- err
		return false
	case <-time.After(d):
		return true
	}
}

// waitIO waits for a Pipes or a Console to finish copying.
func waitIO(t *testing.T, p interface{ Wait(context.Context) error }) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := p.Wait(ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
}

// closeTwice closes a Pipes or a Console twice: Close must be idempotent.
func closeTwice(t *testing.T, p interface{ Close() error }) {
	t.Helper()
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// settled polls until the process has no more fds and goroutines than
// before: closes and goroutine exits may trail the call that caused them.
func settled(t *testing.T, fds, goroutines int) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		nf, ng := countFDs(t), runtime.NumGoroutine()
		if nf <= fds && ng <= goroutines {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("leak: fds %d -> %d, goroutines %d -> %d\n%s", fds, nf, goroutines, ng, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
