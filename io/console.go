package io

import (
	"context"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// defaultVEOF is ^D, sent when the terminal has its EOF character disabled:
// a client that closed stdin still means EOF.
const defaultVEOF = 0x04

// Console carries one terminal process's IO between its pty master and
// containerd.
//
// All master fds are non-blocking and served by Go's runtime poller, so a
// read that waits for output holds no thread and Close interrupts it; no
// epoller of our own has to be run or shut down.
type Console struct {
	// ctrl is the shim's own handle on the master for ioctls. The copies
	// use dups of it (same open file) so that each may close its handle
	// when it ends without taking the others down.
	ctrl   *os.File
	in     *inStream // nil when stdin is not connected
	out    *outStream
	logger *logger
	wg     sync.WaitGroup

	eofOnce sync.Once
	eofErr  error

	closed    atomic.Bool // set when Close begins
	closeOnce sync.Once
	closeErr  error
}

// NewConsole starts copying for master (the pty master fd the process
// sent): cfg.Stdin into the master, the master into cfg.Stdout. Stdin may
// be "" or a fifo/file path; Stdout may be "" (output is discarded so the
// process never blocks on a full terminal), a path, file:// or binary://
// as for New. Stderr is ignored: a terminal has one output stream. It
// takes ownership of master; on error everything is closed.
func NewConsole(ctx context.Context, cfg Config, master *os.File) (_ *Console, retErr error) {
	if master == nil {
		return nil, fmt.Errorf("terminal: no pty master: %w", errdefs.ErrInvalidArgument)
	}
	c := &Console{}
	defer func() {
		if retErr != nil {
			master.Close()
			c.Close()
		}
	}()
	in, err := parseURI(cfg.Stdin)
	if err != nil {
		return nil, fmt.Errorf("terminal stdin: %w", err)
	}
	out, err := parseURI(cfg.Stdout)
	if err != nil {
		return nil, fmt.Errorf("terminal stdout: %w", err)
	}
	if in.kind != kindNone && in.kind != kindPath {
		return nil, fmt.Errorf("terminal stdin %q: only a fifo path can be stdin: %w", cfg.Stdin, errdefs.ErrInvalidArgument)
	}

	if c.ctrl, err = dupPollable(master); err != nil {
		return nil, err
	}
	master.Close()
	if err := c.openOutput(ctx, out, cfg); err != nil {
		return nil, err
	}
	if in.kind == kindPath {
		if err := c.openInput(in.path); err != nil {
			return nil, err
		}
		c.wg.Go(c.in.run)
	}
	c.wg.Go(c.out.run)
	return c, nil
}

func (c *Console) openOutput(ctx context.Context, t target, cfg Config) error {
	var s sink
	switch t.kind {
	case kindNone:
		f, err := openNull(os.O_WRONLY)
		if err != nil {
			return fmt.Errorf("terminal stdout: %w", err)
		}
		s = sink{w: f}
	case kindBinary:
		l, stdout, stderr, err := startLogger(ctx, t, cfg)
		if err != nil {
			return fmt.Errorf("terminal stdout: %w", err)
		}
		c.logger = l
		// The logger reads EOF on its stderr at once: with a terminal
		// everything arrives on stdout.
		stderr.Close()
		s = sink{w: stdout}
	default:
		var err error
		if s, err = openSink("stdout", t); err != nil {
			return fmt.Errorf("terminal: %w", err)
		}
	}
	src, err := dupPollable(c.ctrl)
	if err != nil {
		s.w.Close()
		return err
	}
	c.out = newOutStream("terminal output", src, s, cfg.drainPatience())
	return nil
}

func (c *Console) openInput(path string) error {
	src, err := openSource(path)
	if err != nil {
		return fmt.Errorf("terminal: %w", err)
	}
	dst, err := dupPollable(c.ctrl)
	if err != nil {
		src.close()
		return err
	}
	// The error has nowhere to go from the copy; a process that can no
	// longer be written to has gone anyway.
	c.in = newInStream(src, dst, func(dst *os.File) { c.sendEOF(dst) })
	return nil
}

// dupPollable returns a non-blocking dup of the pty master f, which os
// then serves through the runtime poller. It avoids f.Fd, which would put
// the open file (shared by all dups) back into blocking mode.
func dupPollable(f *os.File) (*os.File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("dup pty master: %w", err)
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, fmt.Errorf("dup pty master: %w", err)
	}
	if derr != nil {
		return nil, fmt.Errorf("dup pty master: %w", derr)
	}
	if err := unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return nil, fmt.Errorf("make pty master non-blocking: %w", err)
	}
	return os.NewFile(uintptr(nfd), f.Name()), nil
}

// control runs fn on the master's fd without handing the fd out.
func (c *Console) control(what string, fn func(fd int) error) error {
	rc, err := c.ctrl.SyscallConn()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if ferr != nil {
		return fmt.Errorf("%s: %w", what, ferr)
	}
	return nil
}

// Resize sets the window size of the terminal (TIOCSWINSZ on the master);
// the kernel sends SIGWINCH to the terminal's foreground process group.
func (c *Console) Resize(width, height uint32) error {
	if width > math.MaxUint16 || height > math.MaxUint16 {
		return fmt.Errorf("resize terminal to %dx%d: size out of range: %w", width, height, errdefs.ErrInvalidArgument)
	}
	if c.closed.Load() {
		return fmt.Errorf("resize terminal: console closed: %w", errdefs.ErrFailedPrecondition)
	}
	ws := &unix.Winsize{Col: uint16(width), Row: uint16(height)}
	return c.control("resize terminal", func(fd int) error {
		return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, ws)
	})
}

// CloseStdin is CloseIO. A terminal's input has no end to close, so EOF
// is the terminal's EOF character (VEOF), written to the master once the
// client also closed its side of the stdin fifo and everything it wrote
// was copied; without a stdin fifo it is written at once. Like a user's
// ^D it ends input only at the start of a line in canonical mode, and
// arrives as a plain byte in raw mode. It is sent at most once.
func (c *Console) CloseStdin() error {
	if c.closed.Load() {
		return nil // nothing is left to deliver EOF to
	}
	if c.in != nil {
		return c.in.closeInput()
	}
	return c.sendEOF(c.ctrl)
}

// sendEOF writes the terminal's current EOF character to the master
// through w. It is read when sent, not at start: the process may have
// changed it (stty eof).
func (c *Console) sendEOF(w *os.File) error {
	c.eofOnce.Do(func() {
		veof := byte(defaultVEOF)
		err := c.control("read terminal attributes", func(fd int) error {
			t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
			if err != nil {
				return err
			}
			if v := t.Cc[unix.VEOF]; v != 0 { // 0 is _POSIX_VDISABLE
				veof = v
			}
			return nil
		})
		if err != nil {
			c.eofErr = fmt.Errorf("close terminal stdin: %w", err)
			return
		}
		if _, err := w.Write([]byte{veof}); err != nil {
			c.eofErr = fmt.Errorf("close terminal stdin: write EOF character: %w", err)
		}
	})
	return c.eofErr
}

// Wait blocks until all output of the terminal was copied: the master
// reported EIO (or EOF) because the last holder of the slave closed it
// (the process and every descendant that inherited the terminal), and a
// stdout fifo's client read it out of the fifo; or until ctx is done. Call
// it after the process exited and before publishing its exit. As with New,
// a stdout fifo the client never opens holds Wait until ctx ends, and an
// output that cannot be written is discarded so the process never blocks;
// that error is returned.
func (c *Console) Wait(ctx context.Context) error {
	select {
	case <-c.out.done:
		return c.out.err
	case <-ctx.Done():
		return fmt.Errorf("wait for terminal output to drain: %w", ctx.Err())
	}
}

// Close stops copying, closes the master and every fifo, and stops its
// goroutines and the logging binary. The process loses its terminal
// (hangup) if it still runs. It is idempotent.
func (c *Console) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		if c.in != nil {
			c.in.stop()
		}
		if c.out != nil {
			c.out.stop()
		}
		c.wg.Wait()
		if c.ctrl != nil {
			c.ctrl.Close()
		}
		if c.logger != nil {
			c.closeErr = c.logger.stop()
		}
	})
	return c.closeErr
}
