package io

import (
	"errors"
	"fmt"
	goio "io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

var errStopped = errors.New("stdio closed")

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

	mu      sync.Mutex
	keeper  *os.File
	stopped bool
}

func newOutStream(name string, src *os.File, s sink) *outStream {
	return &outStream{
		name:     name,
		src:      newEnd(src),
		dst:      newEnd(s.w),
		fifoPath: s.fifoPath,
		done:     make(chan struct{}),
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
	s.release()
	// A pty master reports the last close of its slave as EIO, after
	// everything the slave wrote was read: that is its EOF.
	if errors.Is(rerr, goio.EOF) || errors.Is(rerr, unix.EIO) {
		rerr = nil
	}
	if err := errors.Join(rerr, werr); err != nil && !s.wasStopped() && !closedErr(err) {
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
	if s.stopped {
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keeper != nil {
		s.keeper.Close()
		s.keeper = nil
	}
}

func (s *outStream) wasStopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

// stop interrupts a running copy (blocked reads, writes and fifo opens all
// return) and releases its fds.
func (s *outStream) stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.release()
}
