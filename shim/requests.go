package shim

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/containerd/ttrpc"
)

// replyGrace is how long no request may have been in a handler before the
// server is shut down. ttrpc writes a reply on its connection's loop just
// after the handler returns, and records a connection as busy only when
// that loop next wakes: a connection that got a request while its loop
// slept still counts as idle, and Server.Shutdown closes idle connections
// at once. A Delete racing the Shutdown that its own deletion allowed (a
// shim serving several containers, or any client that does not wait)
// would lose its reply.
const replyGrace = 50 * time.Millisecond

// requestTracker counts the requests inside a handler, so that shutdown
// can wait for their replies.
type requestTracker struct {
	// base makes last a monotonic reading: a wall clock step (a guest's
	// clock set at boot, say) must not skip or stretch the grace.
	base      time.Time
	inHandler atomic.Int64
	// last is when a handler last returned, as time since base.
	last atomic.Int64
}

func newRequestTracker() *requestTracker { return &requestTracker{base: time.Now()} }

// interceptor wraps next, counting every request that passes.
func (rt *requestTracker) interceptor(next ttrpc.UnaryServerInterceptor) ttrpc.UnaryServerInterceptor {
	return func(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (any, error) {
		rt.inHandler.Add(1)
		defer func() {
			rt.last.Store(int64(time.Since(rt.base)))
			rt.inHandler.Add(-1)
		}()
		return next(ctx, unmarshal, info, method)
	}
}

// awaitQuiet returns once no request has been in a handler for replyGrace
// (the Shutdown that asked for it included), or when ctx ends. It is a
// grace, not a proof: a reply still being marshalled after a stall of
// more than replyGrace can be cut off.
func (rt *requestTracker) awaitQuiet(ctx context.Context) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if rt.inHandler.Load() == 0 && rt.quietFor() >= replyGrace {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// quietFor is how long ago the last handler returned; long ago when none
// ever ran.
func (rt *requestTracker) quietFor() time.Duration {
	last := rt.last.Load()
	if last == 0 {
		return time.Duration(1<<63 - 1)
	}
	return time.Since(rt.base) - time.Duration(last)
}
