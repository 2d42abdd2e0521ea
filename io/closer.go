package io

import (
	"errors"
	goio "io"
	"os"
	"sync"

	"github.com/containerd/fifo"
)

// end is a stream end that both a copy goroutine (when it is done) and
// Pipes.Close (to stop it) may close; only the first Close acts.
type end[T goio.Closer] struct {
	v    T
	once sync.Once
	err  error
}

func newEnd[T goio.Closer](v T) *end[T] { return &end[T]{v: v} }

// Close closes the end once; a nil end or value is a no-op.
func (e *end[T]) Close() error {
	if e == nil {
		return nil
	}
	e.once.Do(func() {
		if any(e.v) != nil {
			e.err = e.v.Close()
		}
	})
	return e.err
}

// closedErr reports errors that only say "you stopped me": reads and writes
// on an end that Close closed underneath them.
func closedErr(err error) bool {
	return errors.Is(err, os.ErrClosed) ||
		errors.Is(err, fifo.ErrReadClosed) ||
		errors.Is(err, fifo.ErrWriteClosed) ||
		errors.Is(err, fifo.ErrClosed)
}
