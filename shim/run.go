// Package shim is the lifecycle of the containerd-shim-mini-v2 binary:
// flags and environment, the `start` bootstrap that daemonises the shim, the
// long-running ttrpc server with its reaper and event publisher, and the
// `delete` that cleans up after a shim that died.
package shim

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
)

// version is reported by -version.
const version = "0.1.0-dev"

// Run executes one invocation of the shim binary with args (without the
// program name) and returns the process exit code.
func Run(args []string) int {
	o, err := parseOptions(args, os.Getenv, os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "containerd-shim-mini-v2: %v\n", err)
		return 2
	}
	if o.version {
		fmt.Fprintf(os.Stdout, "containerd-shim-mini-v2 %s\n", version)
		return 0
	}
	if o.info {
		if err := runInfo(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "containerd-shim-mini-v2 -info: %v\n", err)
			return 1
		}
		return 0
	}
	ctx := context.Background()
	switch o.action {
	case actionStart:
		err = runStart(ctx, o, os.Stdin, os.Stdout)
	case actionDelete:
		err = runDelete(ctx, o, os.Stdout, os.Stderr)
	default:
		// Few, short-lived allocations: trade a little CPU for a smaller
		// resident daemon, one per container.
		debug.SetGCPercent(40)
		// The daemon's work is light and mostly waiting; one P means one
		// mcache and fewer threads, so less memory per container.
		runtime.GOMAXPROCS(1)
		err = runDaemon(ctx, o)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "containerd-shim-mini-v2 %s: %v\n", actionName(o.action), err)
		return 1
	}
	return 0
}

func actionName(a string) string {
	if a == actionServe {
		return "serve"
	}
	return a
}

// readLimited reads all of r up to limit bytes; more is an error rather than
// a silently truncated message.
func readLimited(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("more than %d bytes", limit)
	}
	return b, nil
}
