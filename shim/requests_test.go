package shim

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
)

func TestRequestTrackerAwaitQuiet(t *testing.T) {
	pass := func(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (any, error) {
		return method(ctx, unmarshal)
	}
	info := &ttrpc.UnaryServerInfo{FullMethod: "/containerd.task.v3.Task/Delete"}

	t.Run("nothing served", func(t *testing.T) {
		rt := newRequestTracker()
		// No deadline: it must return by itself.
		rt.awaitQuiet(context.Background())
	})

	t.Run("waits for the handler and its reply", func(t *testing.T) {
		rt := newRequestTracker()
		intercept := rt.interceptor(pass)
		entered, release := make(chan struct{}), make(chan struct{})
		var returned atomic.Bool
		go func() {
			_, _ = intercept(context.Background(), nil, info, func(context.Context, func(any) error) (any, error) {
				close(entered)
				<-release
				returned.Store(true)
				return nil, nil
			})
		}()
		<-entered
		quiet := make(chan struct{})
		go func() { rt.awaitQuiet(context.Background()); close(quiet) }()
		select {
		case <-quiet:
			t.Fatal("awaitQuiet returned while a request was in its handler")
		case <-time.After(3 * replyGrace):
		}
		close(release)
		<-quiet
		if !returned.Load() {
			t.Fatal("awaitQuiet returned before the handler did")
		}
	})

	t.Run("gives up when its context ends", func(t *testing.T) {
		rt := newRequestTracker()
		intercept := rt.interceptor(pass)
		entered, release := make(chan struct{}), make(chan struct{})
		defer close(release)
		go func() {
			_, _ = intercept(context.Background(), nil, info, func(context.Context, func(any) error) (any, error) {
				close(entered)
				<-release // a Wait on a running container
				return nil, nil
			})
		}()
		<-entered
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		rt.awaitQuiet(ctx)
		if rt.inHandler.Load() != 1 {
			t.Fatalf("in handler: %d, want 1", rt.inHandler.Load())
		}
	})
}
