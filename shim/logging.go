package shim

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/containerd/fifo"
	"golang.org/x/sys/unix"
)

// newLogger logs at quiet, or at debug with -debug.
func newLogger(w io.Writer, debug bool, quiet slog.Level, attrs ...any) *slog.Logger {
	level := quiet
	if debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})).With(attrs...)
}

// openLogFifo connects the daemon's stderr to the `log` fifo in the bundle,
// which containerd reads and copies into its own log. Pointing fd 2 at it
// (rather than only a Go writer) also brings panics and runtime crashes to
// containerd's log. Without a fifo or a reader, stderr stays as it is.
func openLogFifo(ctx context.Context, path string) error {
	// containerd opens the reader before it runs `start`; a bounded wait
	// keeps a daemon whose containerd went away from hanging here.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	f, err := fifo.OpenFifoDup2(ctx, path, unix.O_WRONLY, 0o700, int(os.Stderr.Fd()))
	if err != nil {
		return fmt.Errorf("open log fifo %s: %w", path, err)
	}
	// fd 2 is the copy that matters.
	f.Close()
	return nil
}
