package io

import (
	"context"
	"errors"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// lazyReader plays a client like ctr: it opens its side of an output fifo
// at once, but its copy reads only when told to (it has not been scheduled
// yet), and the client closes the fifo as soon as it saw the exit.
type lazyReader struct {
	f        *os.File
	read     chan struct{} // closed: read now
	readOnce sync.Once
	got      chan readResult
	exited   chan struct{} // the reading goroutine ended
}

func openLazy(t *testing.T, path string) *lazyReader {
	t.Helper()
	l := &lazyReader{read: make(chan struct{}), got: make(chan readResult, 1), exited: make(chan struct{})}
	opened := make(chan *os.File, 1)
	go func() {
		// Blocks until the shim's write side opens, which New started.
		f, err := os.OpenFile(path, os.O_RDONLY, 0)
		if err != nil {
			t.Errorf("open %s: %v", path, err)
		}
		opened <- f
	}()
	select {
	case l.f = <-opened:
		if l.f == nil {
			t.FailNow()
		}
	case <-time.After(testTimeout):
		t.Fatalf("open %s: no writer after %v", path, testTimeout)
	}
	f := l.f
	go func() {
		defer close(l.exited)
		<-l.read
		buf := make([]byte, 4096)
		n, err := f.Read(buf)
		l.got <- readResult{data: buf[:n], err: err}
	}()
	t.Cleanup(l.finish)
	return l
}

func (l *lazyReader) readNow() { l.readOnce.Do(func() { close(l.read) }) }

// close closes the client's side; a second close is harmless.
func (l *lazyReader) close() { l.f.Close() }

// finish closes the client's side and waits for its reader to end.
func (l *lazyReader) finish() {
	l.close()
	l.readNow()
	<-l.exited
}

// waitAsync runs p.Wait(ctx) in the background.
func waitAsync(ctx context.Context, p *Pipes) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- p.Wait(ctx) }()
	return ch
}

// The output of a process that exited must have left the fifo before Wait
// returns: a client closes its side once it learns of the exit, and what
// it had not read by then is gone (issue 9: an empty `ctr run ... echo`).
func TestWaitUntilClientRead(t *testing.T) {
	out := mkfifo(t, t.TempDir(), "out")
	p := mustNew(t, Config{Stdout: out, DrainPatience: time.Minute})
	defer p.Close()
	client := openLazy(t, out)
	c := spawn(t, p, "echo 17")
	c.wait(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	waited := waitAsync(ctx, p)
	select {
	case err := <-waited:
		t.Fatalf("Wait returned (%v) while the output was still in the fifo", err)
	case <-time.After(300 * time.Millisecond):
	}
	client.readNow()
	if err := <-waited; err != nil {
		t.Fatalf("Wait: %v", err)
	}
	// What the client does on the exit: close, whether its copy is done
	// or not.
	client.close()
	r := <-client.got
	if string(r.data) != "17\n" {
		t.Fatalf("client read %q (%v), want %q", r.data, r.err, "17\n")
	}
	closeTwice(t, p)
}

// A client that went away cannot read what is left in the fifo: Wait must
// not wait for it.
func TestWaitClientGone(t *testing.T) {
	out := mkfifo(t, t.TempDir(), "out")
	p := mustNew(t, Config{Stdout: out, DrainPatience: time.Minute})
	defer p.Close()
	client := openLazy(t, out)
	c := spawn(t, p, "echo 17")
	c.wait(t)
	client.close()
	start := time.Now()
	waitIO(t, p)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Wait took %v with no reader left", d)
	}
	closeTwice(t, p)
}

// A client that holds the fifo open but does not read holds Wait for
// its patience at most; the bytes stay in the fifo for it.
func TestWaitClientNeverReads(t *testing.T) {
	out := mkfifo(t, t.TempDir(), "out")
	const patience = 200 * time.Millisecond
	p := mustNew(t, Config{Stdout: out, DrainPatience: patience})
	defer p.Close()
	client := openLazy(t, out)
	// The wait for the client begins when the copy ends, which can be
	// before c.wait returns: measure from before the spawn.
	start := time.Now()
	c := spawn(t, p, "echo 17")
	c.wait(t)
	waitIO(t, p)
	if d := time.Since(start); d < patience || d > patience+2*time.Second {
		t.Fatalf("Wait returned %v after the spawn, want about %v", d, patience)
	}
	client.readNow()
	if r := <-client.got; string(r.data) != "17\n" {
		t.Fatalf("client read %q (%v) late, want %q", r.data, r.err, "17\n")
	}
	closeTwice(t, p)
}

// Wait's ctx bounds the wait for a client, and Close ends it, leaving
// nothing behind.
func TestCloseWhileClientHoldsOutput(t *testing.T) {
	dir := t.TempDir()
	// Warm up what the runtime and os/exec open once per process.
	warm := mustNew(t, Config{Stdout: "file://" + dir + "/log"})
	spawn(t, warm, "true").wait(t)
	waitIO(t, warm)
	closeTwice(t, warm)

	fds, gs := countFDs(t), runtime.NumGoroutine()
	func() {
		out := mkfifo(t, dir, "out")
		p := mustNew(t, Config{Stdout: out, DrainPatience: time.Minute})
		client := openLazy(t, out)
		defer client.finish()
		c := spawn(t, p, "echo 17")
		c.wait(t)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if err := p.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait = %v, want deadline exceeded", err)
		}
		start := time.Now()
		closeTwice(t, p)
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Close took %v", d)
		}
	}()
	settled(t, fds, gs)
}
