package shim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/minishim/containerd-shim-mini-v2/steptime"
	"github.com/minishim/containerd-shim-mini-v2/task"
)

const (
	// inheritedListenerFd is where start hands the daemon its socket.
	inheritedListenerFd = 3
	serverStopTimeout   = 2 * time.Second
	eventFlushTimeout   = 5 * time.Second
)

// runDaemon is the long-running shim: it serves the Task API on the socket
// start created until Shutdown or SIGTERM/SIGINT.
func runDaemon(ctx context.Context, o *options) error {
	// First of all, as a log write to a fifo containerd stopped reading
	// raises SIGPIPE, which kills a Go program unless it is notified.
	// Caught rather than ignored: an ignored signal would be inherited by
	// the container processes the shim executes.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGPIPE)
	defer signal.Stop(sigs)

	bundle, err := o.bundleDir()
	if err != nil {
		return err
	}
	logErr := openLogFifo(ctx, filepath.Join(bundle, shimLogFifoName))
	logger := newLogger(os.Stderr, o.debug, slog.LevelInfo, "runtime", RuntimeName,
		"namespace", o.namespace, "id", o.id, "pid", os.Getpid())
	// Whatever logs through slog's default lands in containerd's log too.
	slog.SetDefault(logger)
	if logErr != nil {
		logger.Warn("logging to stderr", "error", logErr)
	}

	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become child subreaper: %w", err)
	}
	l, err := daemonListener(o.socket)
	if err != nil {
		return err
	}
	defer l.Close()

	reaper := NewReaper()
	defer reaper.Close()
	if o.ttrpcAddress == "" {
		logger.Warn("no " + envTTRPCAddress + ": events cannot reach containerd")
	}
	pub := NewPublisher(PublisherConfig{Address: o.ttrpcAddress, Namespace: o.namespace, Logger: logger})
	defer func() {
		fctx, cancel := context.WithTimeout(context.Background(), eventFlushTimeout)
		defer cancel()
		if err := pub.Close(fctx); err != nil {
			logger.Error("flush events", "error", err)
		}
	}()

	shutdown := make(chan struct{})
	var once sync.Once
	svc := task.NewService(ctx, task.Config{
		Namespace: o.namespace,
		Publisher: pub,
		Monitor:   reaper,
		ShimPid:   os.Getpid(),
		// Called from inside the Shutdown request: it must not wait for
		// the server, which waits for that request.
		Shutdown: func() { once.Do(func() { close(shutdown) }) },
	})
	requests := newRequestTracker()
	srv, err := ttrpc.NewServer(
		ttrpc.WithServerHandshaker(ttrpc.UnixSocketRequireSameUser()),
		ttrpc.WithUnaryServerInterceptor(requests.interceptor(recoverPanics(logger, o.debug))),
	)
	if err != nil {
		return fmt.Errorf("create ttrpc server: %w", err)
	}
	svc.RegisterTTRPC(srv)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, l) }()
	logger.Info("serving", "socket", o.socket)

	var serveErr error
	requested := false
wait:
	for {
		select {
		case <-shutdown:
			logger.Info("shutdown requested")
			requested = true
			break wait
		case s := <-sigs:
			if s == unix.SIGPIPE {
				continue
			}
			logger.Info("stopping on signal", "signal", s)
			break wait
		case err := <-served:
			if !errors.Is(err, ttrpc.ErrServerClosed) {
				serveErr = fmt.Errorf("serve ttrpc on %s: %w", o.socket, err)
			}
			break wait
		}
	}

	sctx, cancel := context.WithTimeout(context.Background(), serverStopTimeout)
	if requested {
		// No new connection first (a grouped start must not hand a new
		// container to a shim that is going), then the replies of what
		// is in flight: the Shutdown's own, and a Delete that raced it.
		_ = l.Close()
		removeSocket(logger, o.socket)
		requests.awaitQuiet(sctx)
	}
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, net.ErrClosed) {
		logger.Warn("connections still busy at shutdown, closing them", "error", err)
		srv.Close()
	}
	cancel()
	if !requested {
		// After a requested shutdown it is gone already, and the path may
		// be a successor shim's by now.
		removeSocket(logger, o.socket)
	}
	return serveErr
}

// removeSocket removes the shim's socket, if it has one and it is there.
func removeSocket(logger *slog.Logger, socket string) {
	if socket == "" {
		return
	}
	if err := os.Remove(socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		logger.Warn("remove socket", "socket", socket, "error", err)
	}
}

// recoverPanics turns a panic in one request into an Internal error for that
// request. Without it a bug in one call would end the shim, and with it the
// supervision of every container it serves. With debug on, it also logs
// how long the steps of a request took (see package steptime).
func recoverPanics(logger *slog.Logger, debugSteps bool) ttrpc.UnaryServerInterceptor {
	return func(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				logger.Error("panic in request", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
				resp, err = nil, status.Errorf(codes.Internal, "%s: internal error in the shim: %v", info.FullMethod, r)
			}
		}()
		if debugSteps {
			var steps *steptime.Recorder
			ctx, steps = steptime.With(ctx)
			defer func() {
				if steps.Len() > 0 {
					logger.Debug("request steps, ms", "method", info.FullMethod, "steps", steps.String(), "error", err)
				}
			}()
		}
		return method(ctx, unmarshal)
	}
}

// daemonListener is the socket start handed over as fd 3. Without one (the
// daemon run by hand) it listens on path itself. fd 3 is checked to be a
// listening unix socket first: when nothing was inherited there, the Go
// runtime may own that descriptor.
func daemonListener(path string) (net.Listener, error) {
	if isUnixListener(inheritedListenerFd) {
		f := os.NewFile(inheritedListenerFd, "shim-socket")
		defer f.Close()
		l, err := net.FileListener(f)
		if err != nil {
			return nil, fmt.Errorf("inherited socket fd %d: %w", inheritedListenerFd, err)
		}
		return l, nil
	}
	if path == "" {
		return nil, errors.New("no socket: neither inherited as fd 3 nor given with -socket")
	}
	return listenSocket(path)
}

func isUnixListener(fd int) bool {
	domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil || domain != unix.AF_UNIX {
		return false
	}
	accepting, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	return err == nil && accepting == 1
}
