package shim

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	eventsv1 "github.com/containerd/containerd/api/events"
	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// fakeEvents is containerd's Events service as far as the shim sees it.
type fakeEvents struct {
	mu       sync.Mutex
	got      []*types.Envelope
	arrived  chan struct{}
	rejectOf string // topic answered with InvalidArgument
}

func (f *fakeEvents) Forward(ctx context.Context, req *eventsapi.ForwardRequest) (*emptypb.Empty, error) {
	if req.GetEnvelope().GetTopic() == f.rejectOf {
		return nil, status.Error(codes.InvalidArgument, "rejected")
	}
	f.mu.Lock()
	f.got = append(f.got, req.GetEnvelope())
	f.mu.Unlock()
	select {
	case f.arrived <- struct{}{}:
	default:
	}
	return &emptypb.Empty{}, nil
}

func (f *fakeEvents) envelopes() []*types.Envelope {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*types.Envelope(nil), f.got...)
}

// waitFor waits until n envelopes arrived.
func (f *fakeEvents) waitFor(t *testing.T, n int, within time.Duration) []*types.Envelope {
	t.Helper()
	deadline := time.After(within)
	for {
		if got := f.envelopes(); len(got) >= n {
			return got
		}
		select {
		case <-f.arrived:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%d of %d events arrived within %v", len(f.envelopes()), n, within)
		}
	}
}

// serveEvents serves f on path until the returned stop is called.
func serveEvents(t *testing.T, path string, f *fakeEvents) (stop func()) {
	t.Helper()
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	eventsapi.RegisterTTRPCEventsService(srv, f)
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background(), l)
	var once sync.Once
	stop = func() { once.Do(func() { srv.Close() }) }
	t.Cleanup(stop)
	return stop
}

func newFakeEvents() *fakeEvents { return &fakeEvents{arrived: make(chan struct{}, 1)} }

func testPublisher(t *testing.T, path string) *Publisher {
	p := NewPublisher(PublisherConfig{
		Address:     "unix://" + path,
		Namespace:   "testns",
		MaxAge:      10 * time.Second,
		CallTimeout: time.Second,
		MinBackoff:  10 * time.Millisecond,
		MaxBackoff:  100 * time.Millisecond,
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		p.Close(ctx)
	})
	return p
}

// checkInOrder wants exits c0..c(n-1) in order. Delivery is at least once:
// when the server goes away after taking an event but before answering,
// the publisher sends it again, so an event may repeat right after itself
// (never out of order, never lost).
func checkInOrder(t *testing.T, got []*types.Envelope, n int) {
	t.Helper()
	ids := uniqueExitIDs(t, got)
	if len(ids) != n {
		t.Fatalf("%d distinct events delivered, want %d: %v", len(ids), n, ids)
	}
	for i, id := range ids {
		if want := fmt.Sprint("c", i); id != want {
			t.Fatalf("event %d is for %s, want %s: out of order", i, id, want)
		}
	}
}

// uniqueExitIDs lists the container ids of exit events, folding an event
// that repeats the one just before it.
func uniqueExitIDs(t *testing.T, got []*types.Envelope) []string {
	t.Helper()
	var ids []string
	for i, env := range got {
		v, err := typeurl.UnmarshalAny(env.GetEvent())
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		exit, ok := v.(*eventsv1.TaskExit)
		if !ok {
			t.Fatalf("event %d is %T", i, v)
		}
		if len(ids) > 0 && ids[len(ids)-1] == exit.GetContainerID() {
			continue
		}
		ids = append(ids, exit.GetContainerID())
	}
	return ids
}

// waitForUnique waits until n distinct exits arrived (see checkInOrder).
func (f *fakeEvents) waitForUnique(t *testing.T, n int, within time.Duration) []*types.Envelope {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := f.envelopes()
		if len(uniqueExitIDs(t, got)) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func publishExits(p *Publisher, from, to int) {
	for i := from; i < to; i++ {
		p.Publish(context.Background(), "", "/tasks/exit", &eventsv1.TaskExit{ContainerID: fmt.Sprint("c", i), Pid: uint32(i)})
	}
}

func TestPublisherEnvelope(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ev.sock")
	f := newFakeEvents()
	serveEvents(t, path, f)
	p := testPublisher(t, path)

	before := time.Now().Add(-time.Second)
	p.Publish(context.Background(), "", "/tasks/create", &eventsv1.TaskCreate{ContainerID: "c1", Pid: 42})
	env := f.waitFor(t, 1, 5*time.Second)[0]

	if env.GetNamespace() != "testns" || env.GetTopic() != "/tasks/create" {
		t.Errorf("envelope namespace %q topic %q", env.GetNamespace(), env.GetTopic())
	}
	// containerd and its clients find the type by this exact name.
	if got := env.GetEvent().GetTypeUrl(); got != "containerd.events.TaskCreate" {
		t.Errorf("type url %q", got)
	}
	if ts := env.GetTimestamp().AsTime(); ts.Before(before) || ts.After(time.Now()) {
		t.Errorf("timestamp %v", ts)
	}
}

func TestPublisherDelivery(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, path string, f *fakeEvents, p *Publisher)
	}{
		{
			name: "in order",
			run: func(t *testing.T, path string, f *fakeEvents, p *Publisher) {
				serveEvents(t, path, f)
				publishExits(p, 0, 200)
				checkInOrder(t, f.waitFor(t, 200, 10*time.Second), 200)
			},
		},
		{
			name: "server appears late",
			run: func(t *testing.T, path string, f *fakeEvents, p *Publisher) {
				publishExits(p, 0, 20)
				time.Sleep(300 * time.Millisecond)
				serveEvents(t, path, f)
				checkInOrder(t, f.waitFor(t, 20, 10*time.Second), 20)
			},
		},
		{
			name: "server restarts",
			run: func(t *testing.T, path string, f *fakeEvents, p *Publisher) {
				stop := serveEvents(t, path, f)
				publishExits(p, 0, 10)
				f.waitFor(t, 10, 5*time.Second)
				stop()
				publishExits(p, 10, 20)
				time.Sleep(200 * time.Millisecond)
				serveEvents(t, path, f)
				checkInOrder(t, f.waitForUnique(t, 20, 10*time.Second), 20)
			},
		},
		{
			name: "rejected event is dropped, later ones go on",
			run: func(t *testing.T, path string, f *fakeEvents, p *Publisher) {
				f.rejectOf = "/tasks/oom"
				serveEvents(t, path, f)
				publishExits(p, 0, 1)
				p.Publish(context.Background(), "", "/tasks/oom", &eventsv1.TaskOOM{ContainerID: "x"})
				publishExits(p, 1, 2)
				checkInOrder(t, f.waitFor(t, 2, 5*time.Second), 2)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ev.sock")
			f := newFakeEvents()
			tt.run(t, path, f, testPublisher(t, path))
		})
	}
}

func TestPublisherCloseFlushes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ev.sock")
	f := newFakeEvents()
	p := testPublisher(t, path)
	publishExits(p, 0, 50)
	go func() {
		time.Sleep(200 * time.Millisecond)
		serveEvents(t, path, f)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	checkInOrder(t, f.envelopes(), 50)
}

func TestPublisherCloseDeadline(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nobody.sock")
	p := testPublisher(t, path)
	publishExits(p, 0, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := p.Close(ctx); err == nil {
		t.Fatal("close reported success with nobody listening")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("close took %v past its deadline", d)
	}
	// Publishing after Close must neither block nor panic.
	publishExits(p, 3, 4)
}
