package shim

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// PublisherConfig says where events go and how hard to try.
type PublisherConfig struct {
	// Address is containerd's ttrpc address ($TTRPC_ADDRESS), with or
	// without the unix:// prefix.
	Address string
	// Namespace stamps every envelope that names none of its own.
	Namespace string
	Logger    *slog.Logger
	// MaxAge bounds how long one event is retried after it was published
	// before it is dropped; 0 means 30s.
	MaxAge time.Duration
	// CallTimeout bounds one Forward call; 0 means 5s.
	CallTimeout time.Duration
	// MinBackoff and MaxBackoff bound the pause between attempts; 0 means
	// 50ms and 1s.
	MinBackoff, MaxBackoff time.Duration
}

// Publisher forwards events to containerd over ttrpc. It implements
// task.Publisher: Publish only queues, and a single sender delivers the
// queue in order, reconnecting and retrying while containerd is away.
type Publisher struct {
	cfg PublisherConfig
	log *slog.Logger

	mu      sync.Mutex
	queue   []*pendingEvent
	closing bool

	wake chan struct{}
	// abortCtx ends when Close's deadline passed: pending calls and
	// backoffs stop at once.
	abortCtx context.Context
	abort    context.CancelFunc
	done     chan struct{} // closed when the sender returned

	// client and events (its Events API) are only touched by the sender
	// goroutine.
	client *ttrpc.Client
	events eventsapi.TTRPCEventsService
}

type pendingEvent struct {
	env      *types.Envelope
	queued   time.Time
	attempts int
}

// NewPublisher starts the sender; it connects lazily, at the first event.
func NewPublisher(cfg PublisherConfig) *Publisher {
	if cfg.MaxAge == 0 {
		cfg.MaxAge = 30 * time.Second
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = 5 * time.Second
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 50 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = time.Second
	}
	l := cfg.Logger
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	abortCtx, abort := context.WithCancel(context.Background())
	p := &Publisher{
		cfg:      cfg,
		log:      l.With("component", "publisher"),
		wake:     make(chan struct{}, 1),
		abortCtx: abortCtx,
		abort:    abort,
		done:     make(chan struct{}),
	}
	go p.run()
	return p
}

// Publish queues event of namespace (the publisher's own when empty) under
// topic and returns at once.
func (p *Publisher) Publish(ctx context.Context, namespace, topic string, event proto.Message) {
	if namespace == "" {
		namespace = p.cfg.Namespace
	}
	evt, err := typeurl.MarshalAnyToProto(event)
	if err != nil {
		p.log.Error("drop event: marshal", "topic", topic, "error", err)
		return
	}
	pe := &pendingEvent{
		env: &types.Envelope{
			Timestamp: timestamppb.Now(),
			Namespace: namespace,
			Topic:     topic,
			Event:     evt,
		},
		queued: time.Now(),
	}
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		p.log.Error("drop event: publisher closed", "topic", topic)
		return
	}
	p.queue = append(p.queue, pe)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Close delivers what is queued, giving up when ctx ends, and disconnects.
func (p *Publisher) Close(ctx context.Context) error {
	p.mu.Lock()
	p.closing = true
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	select {
	case <-p.done:
		p.abort()
		return nil
	case <-ctx.Done():
	}
	p.abort()
	<-p.done
	p.mu.Lock()
	lost := len(p.queue)
	p.queue = nil
	p.mu.Unlock()
	if lost > 0 {
		p.log.Error("drop events: publisher closed before delivery", "count", lost)
		return fmt.Errorf("close publisher: %d events not delivered: %w", lost, ctx.Err())
	}
	return nil
}

func (p *Publisher) run() {
	defer close(p.done)
	defer p.disconnect()
	for {
		pe, closing := p.head()
		if pe == nil {
			if closing {
				return
			}
			select {
			case <-p.wake:
				continue
			case <-p.abortCtx.Done():
				return
			}
		}
		if !p.deliver(pe) {
			return
		}
		p.pop()
	}
}

func (p *Publisher) head() (*pendingEvent, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) == 0 {
		return nil, p.closing
	}
	return p.queue[0], p.closing
}

func (p *Publisher) pop() {
	p.mu.Lock()
	p.queue[0] = nil
	p.queue = p.queue[1:]
	p.mu.Unlock()
}

// deliver tries pe until it is sent, rejected by containerd, or too old.
// It returns false only when Close gave up waiting.
func (p *Publisher) deliver(pe *pendingEvent) bool {
	backoff := p.cfg.MinBackoff
	for {
		pe.attempts++
		err := p.forward(pe.env)
		if err == nil {
			return true
		}
		if permanent(err) {
			p.log.Error("drop event: rejected by containerd", "topic", pe.env.Topic, "error", err)
			return true
		}
		if time.Since(pe.queued) > p.cfg.MaxAge {
			p.log.Error("drop event: containerd unreachable", "topic", pe.env.Topic,
				"attempts", pe.attempts, "error", err)
			return true
		}
		p.log.Warn("forward event, will retry", "topic", pe.env.Topic, "attempt", pe.attempts, "error", err)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-p.abortCtx.Done():
			t.Stop()
			return false
		}
		backoff = min(2*backoff, p.cfg.MaxBackoff)
	}
}

func (p *Publisher) forward(env *types.Envelope) error {
	if p.client == nil {
		d := net.Dialer{Timeout: p.cfg.CallTimeout}
		conn, err := d.DialContext(p.abortCtx, "unix", socketPathOf(p.cfg.Address))
		if err != nil {
			return fmt.Errorf("connect to containerd at %s: %w", p.cfg.Address, err)
		}
		p.client = ttrpc.NewClient(conn)
		p.events = eventsapi.NewTTRPCEventsClient(p.client)
	}
	ctx, cancel := context.WithTimeout(p.abortCtx, p.cfg.CallTimeout)
	defer cancel()
	_, err := p.events.Forward(ctx, &eventsapi.ForwardRequest{Envelope: env})
	if err != nil && !permanent(err) {
		// The connection may be broken (containerd restarted); a fresh one
		// is cheap and the next attempt needs it.
		p.disconnect()
	}
	return err
}

func (p *Publisher) disconnect() {
	if p.client != nil {
		p.client.Close()
		p.client, p.events = nil, nil
	}
}

// permanent says containerd answered and refused the event: retrying would
// get the same answer.
func permanent(err error) bool {
	s, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch s.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Unknown, codes.ResourceExhausted:
		return false
	default:
		return true
	}
}
