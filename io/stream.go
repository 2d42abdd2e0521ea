package io

import (
	"errors"
	"fmt"
	goio "io"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

var errStopped = errors.New("stdio closed")

// How an output copy waits for its client to read what is still in the
// fifo (see outStream.awaitDrained). The kernel has no event for "a pipe
// became empty", so it is polled: first soon, since a client that is
// running reads within a moment, then less often for one that is slow.
const (
	drainPollMin = 200 * time.Microsecond
	drainPollMax = 10 * time.Millisecond
	// defaultDrainPatience is how long a client that holds the fifo open
	// may go without reading before the copy stops waiting for it (Config
	// may say otherwise). Waiting longer gains nothing: the bytes stay in
	// the fifo for that client anyway, and only the exit is held up.
	defaultDrainPatience = 2 * time.Second
)

// inStream copies a client's stdin into the pipe the child reads.
type inStream struct {
	src    *end[goio.ReadCloser]
	keeper *end[goio.Closer] // see source.keeper
	dst    *end[*os.File]    // shim's write end of the child's stdin pipe
	// atEOF, if set, runs when src reached EOF (not when the copy was
	// stopped or the child went away), before dst is closed: a terminal
	// has no write end to close, so EOF must be sent in-band through dst.
	atEOF func(dst *os.File)
}

// newInStream copies src into dst; atEOF may be nil.
func newInStream(src source, dst *os.File, atEOF func(dst *os.File)) *inStream {
	return &inStream{src: newEnd(src.r), keeper: newEnd(src.keeper), dst: newEnd(dst), atEOF: atEOF}
}

func (s *inStream) run() {
	buf := getBuf()
	defer putBuf(buf)
	for {
		n, rerr := s.src.v.Read(*buf)
		if n > 0 {
			// A write error means the child closed its stdin or is gone;
			// nobody is left to read what the client still sends.
			if _, werr := s.dst.v.Write((*buf)[:n]); werr != nil {
				break
			}
		}
		if rerr != nil {
			if s.atEOF != nil && errors.Is(rerr, goio.EOF) {
				s.atEOF(s.dst.v)
			}
			break
		}
	}
	// The child sees EOF now. Closing the keeper too (it is also a reader)
	// lets a client that still writes get EPIPE instead of blocking on a
	// fifo nobody drains.
	s.dst.Close()
	s.src.Close()
	s.keeper.Close()
}

// closeInput lets the copy reach EOF once every client writer closed too.
func (s *inStream) closeInput() error {
	if err := s.keeper.Close(); err != nil {
		return fmt.Errorf("close stdin: %w", err)
	}
	return nil
}

func (s *inStream) stop() {
	s.keeper.Close()
	s.src.Close()
	s.dst.Close()
}

// outStream copies what the child writes to stdout or stderr to its sink.
type outStream struct {
	name     string
	src      *end[*os.File] // shim's read end of the child's pipe
	dst      *end[goio.WriteCloser]
	fifoPath string
	done     chan struct{}
	err      error // set before done is closed

	mu     sync.Mutex
	keeper *os.File
	stopc  chan struct{} // closed by stop, under mu
	// patience is how long awaitDrained waits for a client not reading.
	patience time.Duration
}

func newOutStream(name string, src *os.File, s sink, patience time.Duration) *outStream {
	return &outStream{
		name:     name,
		src:      newEnd(src),
		dst:      newEnd(s.w),
		fifoPath: s.fifoPath,
		done:     make(chan struct{}),
		stopc:    make(chan struct{}),
		patience: patience,
	}
}

func (s *outStream) run() {
	defer close(s.done)
	buf := getBuf()
	defer putBuf(buf)
	var rerr, werr error
	connected := s.fifoPath == ""
	for {
		var n int
		n, rerr = s.src.v.Read(*buf)
		if n > 0 && werr == nil {
			if !connected {
				werr = s.awaitReader()
				connected = true
			}
			if werr == nil {
				_, werr = s.dst.v.Write((*buf)[:n])
			}
		}
		// After a write error keep reading and drop the output: a child
		// blocked on a full pipe would never exit, and its exit matters
		// more than the rest of a log that can no longer be written.
		if rerr != nil {
			break
		}
	}
	if !connected && werr == nil {
		// Even with nothing to copy, close only once the client opened its
		// side: closing a fifo whose reader has not opened yet means that
		// reader's open never returns, and the client hangs instead of
		// seeing EOF.
		s.dst.v.Write(nil)
	}
	if connected && werr == nil && s.fifoPath != "" {
		s.awaitDrained()
	}
	s.release()
	// A pty master reports the last close of its slave as EIO, after
	// everything the slave wrote was read: that is its EOF.
	if errors.Is(rerr, goio.EOF) || errors.Is(rerr, unix.EIO) {
		rerr = nil
	}
	if err := errors.Join(rerr, werr); err != nil && !s.isStopped() && !closedErr(err) {
		s.err = fmt.Errorf("copy %s: %w", s.name, err)
	}
}

// awaitReader waits until the client opened its side of the fifo, then
// opens a read handle of the shim's own. That handle is never read: it
// only keeps the fifo with a reader, so a client that goes away (ctr
// exits, a CRI restart) makes writes wait for the next reader instead of
// failing with EPIPE and losing output. It is opened only after a real
// reader appeared; opened earlier it would let our writes land in a fifo
// nobody may ever read.
func (s *outStream) awaitReader() error {
	// A zero-length write returns as soon as the pending open completes
	// (or fails if Close stopped the stream).
	if _, err := s.dst.v.Write(nil); err != nil {
		return err
	}
	// A fifo opened for reading without O_NONBLOCK would wait for a writer;
	// with it, the open succeeds at once.
	k, err := os.OpenFile(s.fifoPath, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		// Only resilience against a vanishing reader is lost; the copy
		// itself still works.
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isStopped() {
		k.Close()
		return errStopped
	}
	s.keeper = k
	return nil
}

// release closes everything the copy used: the client sees EOF once it
// read what the fifo still holds.
func (s *outStream) release() {
	s.dst.Close()
	s.src.Close()
	s.closeKeeper()
}

func (s *outStream) closeKeeper() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keeper != nil {
		s.keeper.Close()
		s.keeper = nil
	}
}

// awaitDrained waits, after the last write, until the client has read
// everything that is still in the fifo, so that done (and with it the
// exit the task service publishes after Wait) comes only once the output
// has left the fifo. Clients close their reading side as soon as they see
// the exit, without reading what is left: containerd 1.6's task.Delete
// closes the fifos before it waits for its copies, and in 2.x cio's
// Cancel, which Delete calls first, does. Whatever the client's copy had
// not read yet was lost; under load that was now and then all of a short
// output (an empty `ctr run --rm ... echo`).
//
// It does not wait for a client that is gone (no reader is left, so nobody
// can read the bytes any more), nor for one that holds the fifo open but
// has not read for its patience, nor after stop.
func (s *outStream) awaitDrained() {
	// The keeper is a reader too: while it is open, "no reader left"
	// cannot be told. Nothing is written any more, so nothing needs it.
	s.closeKeeper()
	sc, ok := s.dst.v.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	poll := drainPollMin
	last, lastChange := -1, time.Now()
	timer := time.NewTimer(poll)
	defer timer.Stop()
	for {
		unread, reader, err := fifoBacklog(rc)
		if err != nil || unread == 0 || !reader {
			return
		}
		if unread != last {
			last, lastChange = unread, time.Now()
		} else if time.Since(lastChange) >= s.patience {
			return
		}
		timer.Reset(poll)
		select {
		case <-s.stopc:
			return
		case <-timer.C:
		}
		poll = min(2*poll, drainPollMax)
	}
}

// fifoBacklog reports how many written bytes the fifo behind rc (its write
// end) still holds, and whether any reader has it open.
func fifoBacklog(rc syscall.RawConn) (unread int, reader bool, err error) {
	var opErr error
	err = rc.Control(func(fd uintptr) {
		// TIOCINQ is FIONREAD: for a pipe, the bytes not read yet, asked
		// through either end.
		if unread, opErr = unix.IoctlGetInt(int(fd), unix.TIOCINQ); opErr != nil {
			return
		}
		// A pipe's write end polls POLLERR once no reader has it open.
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		for {
			_, opErr = unix.Poll(fds, 0)
			if opErr != unix.EINTR {
				break
			}
		}
		reader = fds[0].Revents&unix.POLLERR == 0
	})
	if err == nil {
		err = opErr
	}
	return unread, reader, err
}

// isStopped says whether stop was called.
func (s *outStream) isStopped() bool {
	select {
	case <-s.stopc:
		return true
	default:
		return false
	}
}

// stop interrupts a running copy (blocked reads, writes and fifo opens all
// return) and releases its fds.
func (s *outStream) stop() {
	s.mu.Lock()
	if !s.isStopped() {
		close(s.stopc)
	}
	s.mu.Unlock()
	s.release()
}
