package io

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// Config is the stdio of one process as containerd requested it.
type Config struct {
	// Stdin, Stdout, Stderr: "" (not connected), an absolute fifo path,
	// file:///abs/path (stdout/stderr), binary:///abs/path?k=v or
	// binary-v2:///... (stdout; stderr then goes to the same logger).
	Stdin, Stdout, Stderr string
	Terminal              bool
	// For binary:// logs.
	ContainerID, Namespace string
	// StartLogger starts a logging binary. The shim must pass a function
	// backed by its reaper: the reaper waits for every child, so an
	// exec.Cmd.Wait of ours would race it. Nil starts the binary with
	// exec.Cmd.Start and waits for it here (processes without a reaper).
	StartLogger StartFunc
	// DrainPatience is how long an exit waits for a client that holds an
	// output fifo open without reading what is left in it; zero means
	// two seconds.
	DrainPatience time.Duration
}

func (c Config) drainPatience() time.Duration {
	if c.DrainPatience > 0 {
		return c.DrainPatience
	}
	return defaultDrainPatience
}

// Pipes carries one process's stdio between containerd and the child.
type Pipes struct {
	child     [3]*os.File // what the child gets as fds 0, 1, 2
	childOnce sync.Once

	in       *inStream    // nil when stdin is not connected
	outs     []*outStream // stdout/stderr copies (none for /dev/null or a logger)
	logger   *logger
	patience time.Duration // of the output copies, Config's

	mu      sync.Mutex
	started bool
	closed  bool
	wg      sync.WaitGroup // copy goroutines

	closeOnce sync.Once
	closeErr  error
}

// New opens everything cfg names. uid/gid: the container user's ids; the
// child's pipe ends are chowned to them so that a non-root process can
// reopen /proc/self/fd/N; -1 leaves an id unchanged. On error nothing is
// left open.
func New(ctx context.Context, cfg Config, uid, gid int) (_ *Pipes, retErr error) {
	if cfg.Terminal {
		return nil, fmt.Errorf("terminal stdio has no pipes, use NewConsole: %w", errdefs.ErrNotImplemented)
	}
	in, err := parseURI(cfg.Stdin)
	if err != nil {
		return nil, fmt.Errorf("stdin: %w", err)
	}
	out, err := parseURI(cfg.Stdout)
	if err != nil {
		return nil, fmt.Errorf("stdout: %w", err)
	}
	errT, err := parseURI(cfg.Stderr)
	if err != nil {
		return nil, fmt.Errorf("stderr: %w", err)
	}
	if in.kind != kindNone && in.kind != kindPath {
		return nil, fmt.Errorf("stdin %q: only a fifo path can be stdin: %w", cfg.Stdin, errdefs.ErrInvalidArgument)
	}
	if errT.kind == kindBinary && out.kind != kindBinary {
		return nil, fmt.Errorf("stderr %q: a logging binary must be given as stdout: %w", cfg.Stderr, errdefs.ErrInvalidArgument)
	}

	p := &Pipes{patience: cfg.drainPatience()}
	defer func() {
		if retErr != nil {
			p.Close()
		}
	}()
	if err := p.openStdin(in, uid, gid); err != nil {
		return nil, err
	}
	if out.kind == kindBinary {
		// Like runc-v2, the logger takes both streams whatever stderr says.
		l, stdout, stderr, err := startLogger(ctx, out, cfg)
		if err != nil {
			return nil, err
		}
		p.logger, p.child[1], p.child[2] = l, stdout, stderr
		for _, f := range p.child[1:] {
			if err := handToChild(f, uid, gid); err != nil {
				return nil, err
			}
		}
		return p, nil
	}
	for i, o := range []struct {
		name string
		t    target
	}{{"stdout", out}, {"stderr", errT}} {
		if err := p.openOutput(i+1, o.name, o.t, uid, gid); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *Pipes) openStdin(t target, uid, gid int) error {
	if t.kind == kindNone {
		f, err := openNull(os.O_RDONLY)
		if err != nil {
			return fmt.Errorf("stdin: %w", err)
		}
		p.child[0] = f
		return nil
	}
	src, err := openSource(t.path)
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		src.close()
		return fmt.Errorf("stdin pipe: %w", err)
	}
	p.child[0] = r
	p.in = newInStream(src, w, nil)
	return handToChild(r, uid, gid)
}

func (p *Pipes) openOutput(fd int, name string, t target, uid, gid int) error {
	if t.kind == kindNone {
		f, err := openNull(os.O_WRONLY)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		p.child[fd] = f
		return nil
	}
	s, err := openSink(name, t)
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		s.w.Close()
		return fmt.Errorf("%s pipe: %w", name, err)
	}
	p.child[fd] = w
	p.outs = append(p.outs, newOutStream(name, r, s, p.patience))
	return handToChild(w, uid, gid)
}

// handToChild prepares a pipe end for the child: Fd puts it back into
// blocking mode (os.Pipe makes it non-blocking for Go's poller, and a
// child does not expect EAGAIN), and the chown lets the container user
// reopen it through /proc/self/fd.
func handToChild(f *os.File, uid, gid int) error {
	fd := int(f.Fd())
	if uid < 0 && gid < 0 {
		return nil
	}
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return fmt.Errorf("chown stdio pipe to %d:%d: %w", uid, gid, err)
	}
	return nil
}

// ChildFiles are the files to hand the child as fds 0, 1, 2 (never nil:
// /dev/null where unconnected). They are closed by Start, CloseChildEnds
// and Close.
func (p *Pipes) ChildFiles() (stdin, stdout, stderr *os.File) {
	return p.child[0], p.child[1], p.child[2]
}

// Start begins copying; call it after the child was spawned. It also
// closes the shim's copies of the child's ends, so that EOF arrives when
// the child and its descendants closed theirs.
func (p *Pipes) Start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started || p.closed {
		return
	}
	p.started = true
	p.CloseChildEnds()
	if p.in != nil {
		p.wg.Go(p.in.run)
	}
	for _, s := range p.outs {
		p.wg.Go(s.run)
	}
}

// CloseChildEnds closes the child's ends without starting (when the spawn
// failed). It is idempotent.
func (p *Pipes) CloseChildEnds() {
	p.childOnce.Do(func() {
		for _, f := range p.child {
			if f != nil {
				f.Close()
			}
		}
	})
}

// CloseStdin is CloseIO: once the client also closed its side of the stdin
// fifo and everything it wrote was copied, the child reads EOF. As with
// runc-v2, a client that keeps its side open delays the EOF until it
// closes it.
func (p *Pipes) CloseStdin() error {
	if p.in == nil {
		return nil
	}
	return p.in.closeInput()
}

// Wait blocks until stdout and stderr were copied to their end (EOF from
// the pipe) and, for a fifo, read out of it by the client; or until ctx is
// done. Call it after the process exited and before publishing TaskExit,
// so that no output is lost: clients close their fifos once they saw the
// exit, whether they read everything or not. It does not wait for a client
// that closed its side, nor long for one that keeps it open without
// reading (see outStream.awaitDrained). A fifo is closed only after its
// client opened it (else the client's open would hang), so a client that
// never opens its side holds Wait until ctx ends. Wait returns the errors
// of copies that could not write (the rest of that stream was discarded so
// the child never blocks). Before Start it returns at once.
func (p *Pipes) Wait(ctx context.Context) error {
	p.mu.Lock()
	started := p.started
	p.mu.Unlock()
	if !started {
		return nil
	}
	var errs []error
	for _, s := range p.outs {
		select {
		case <-s.done:
			errs = append(errs, s.err)
		case <-ctx.Done():
			return fmt.Errorf("wait for %s to drain: %w", s.name, ctx.Err())
		}
	}
	return errors.Join(errs...)
}

// Close stops all copying and releases every fd and goroutine. It is
// idempotent.
func (p *Pipes) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		p.CloseChildEnds()
		if p.in != nil {
			p.in.stop()
		}
		for _, s := range p.outs {
			s.stop()
		}
		p.wg.Wait()
		if p.logger != nil {
			p.closeErr = p.logger.stop()
		}
	})
	return p.closeErr
}
