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
	inHandler atomic.Int64
	// last is when a handler last returned, in UnixNano.
	last atomic.Int64
}

// interceptor wraps next, counting every request that passes.
func (rt *requestTracker) interceptor(next ttrpc.UnaryServerInterceptor) ttrpc.UnaryServerInterceptor {
	return func(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (any, error) {
		rt.inHandler.Add(1)
		defer func() {
			rt.last.Store(time.Now().UnixNano())
			rt.inHandler.Add(-1)
		}()
		return next(ctx, unmarshal, info, method)
	}
}

// awaitQuiet returns once no request has been in a handler for replyGrace
// (the one that asked for the shutdown included), or when ctx ends: a
// Wait on a container that is still running never returns by itself.
func (rt *requestTracker) awaitQuiet(ctx context.Context) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if rt.inHandler.Load() == 0 && time.Since(time.Unix(0, rt.last.Load())) >= replyGrace {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
