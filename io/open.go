package io

import (
	"context"
	"errors"
	"fmt"
	goio "io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/containerd/fifo"
	"golang.org/x/sys/unix"
)

// source is where a child's stdin comes from.
type source struct {
	r goio.ReadCloser
	// keeper is the shim's own writing handle on the stdin fifo (nil for a
	// plain file). While it is open the reader never sees EOF, so a client
	// may close and reopen its side (attach) without ending the child's
	// stdin; CloseStdin closes it.
	keeper goio.Closer
}

// close releases a source that will not be copied.
func (s source) close() {
	s.r.Close()
	if s.keeper != nil {
		s.keeper.Close()
	}
}

// openSource opens the stdin path a client gave.
func openSource(path string) (source, error) {
	isFifo, err := fifo.IsFifo(path)
	if err != nil {
		return source{}, fmt.Errorf("stat stdin %s: %w", path, err)
	}
	if !isFifo {
		f, err := os.Open(path)
		if err != nil {
			return source{}, fmt.Errorf("open stdin %s: %w", path, classify(err))
		}
		return source{r: f}, nil
	}
	// The keeper is opened read-write because that open never blocks and
	// is done when it returns: an asynchronous write-only open could still
	// be pending when a fast client has already written and closed, and the
	// child would see EOF early. Nothing reads through the keeper, so it
	// steals no input. With a writer present the read-only open below
	// returns at once too.
	k, err := fifo.OpenFifo(context.Background(), path, unix.O_RDWR, 0)
	if err != nil {
		return source{}, fmt.Errorf("open stdin fifo %s: %w", path, classify(err))
	}
	r, err := fifo.OpenFifo(context.Background(), path, unix.O_RDONLY, 0)
	if err != nil {
		k.Close()
		return source{}, fmt.Errorf("open stdin fifo %s for reading: %w", path, classify(err))
	}
	return source{r: r, keeper: k}, nil
}

// sink is where a child's stdout or stderr goes.
type sink struct {
	w goio.WriteCloser
	// fifoPath is set when w is a fifo whose open may still be pending
	// until the client opens its reading side.
	fifoPath string
}

// openSink opens the stdout/stderr target t for stream name.
func openSink(name string, t target) (sink, error) {
	switch t.kind {
	case kindPath:
		isFifo, err := fifo.IsFifo(t.path)
		if err != nil {
			return sink{}, fmt.Errorf("stat %s %s: %w", name, t.path, err)
		}
		if !isFifo {
			// An existing file or device: append, as runc-v2 does; a
			// missing path is the client's mistake, not ours to create.
			f, err := os.OpenFile(t.path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return sink{}, fmt.Errorf("open %s %s: %w", name, t.path, classify(err))
			}
			return sink{w: f}, nil
		}
		// Write-only and non-blocking: the open completes when the client
		// opens its reading side, and writes wait for that, so output
		// written before a late reader arrives is kept, not dropped into a
		// fifo nobody reads. See outStream.awaitReader for the read handle.
		// No request context: the open may complete long after the request
		// ended, and the fifo package closes a fifo whose context ends
		// before it opened.
		w, err := fifo.OpenFifo(context.Background(), t.path, unix.O_WRONLY|unix.O_NONBLOCK, 0)
		if err != nil {
			return sink{}, fmt.Errorf("open %s fifo %s: %w", name, t.path, classify(err))
		}
		return sink{w: w, fifoPath: t.path}, nil
	case kindFile:
		if err := os.MkdirAll(filepath.Dir(t.path), 0o755); err != nil {
			return sink{}, fmt.Errorf("create directory of %s log %s: %w", name, t.path, err)
		}
		f, err := os.OpenFile(t.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return sink{}, fmt.Errorf("open %s log %s: %w", name, t.path, classify(err))
		}
		return sink{w: f}, nil
	default:
		return sink{}, fmt.Errorf("%s: no sink for target kind %d: %w", name, t.kind, errdefs.ErrInvalidArgument)
	}
}

// openNull opens /dev/null for an unconnected stream.
func openNull(flag int) (*os.File, error) {
	f, err := os.OpenFile(os.DevNull, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	return f, nil
}

// classify adds the errdefs class a caller of New cares about.
func classify(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %w", errdefs.ErrNotFound, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w: %w", errdefs.ErrPermissionDenied, err)
	default:
		return err
	}
}
