// Package steptime records how long the steps of one request take, for the
// shim's debug log: a request's context carries a Recorder, and the code
// along its path marks the end of each step. Without a Recorder in the
// context, Mark does nothing, so the path pays nothing when debug logging
// is off.
package steptime

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Recorder collects the steps of one request.
type Recorder struct {
	mu    sync.Mutex
	start time.Time
	last  time.Time
	steps []step
	// details are steps another process timed (a container's init),
	// shown after ours, each name prefixed.
	details []string
}

type step struct {
	name string
	took time.Duration
}

type recorderKey struct{}

// With returns ctx carrying a new Recorder, started now.
func With(ctx context.Context) (context.Context, *Recorder) {
	now := time.Now()
	r := &Recorder{start: now, last: now}
	return context.WithValue(ctx, recorderKey{}, r), r
}

// Mark ends step name of ctx's request: it took the time since the
// previous mark (or since the request began).
func Mark(ctx context.Context, name string) {
	r, ok := ctx.Value(recorderKey{}).(*Recorder)
	if !ok {
		return
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.steps = append(r.steps, step{name: name, took: now.Sub(r.last)})
	r.last = now
}

// Active says whether ctx carries a Recorder: a process the request
// starts may then time its own steps (see Detail).
func Active(ctx context.Context) bool {
	_, ok := ctx.Value(recorderKey{}).(*Recorder)
	return ok
}

// Detail adds steps another process timed, as its Recorder's String
// printed them ("config=0.10 rootfs=0.52 total=0.90"), each name prefixed
// with prefix and a dot. They do not move ctx's own steps.
func Detail(ctx context.Context, prefix, steps string) {
	r, ok := ctx.Value(recorderKey{}).(*Recorder)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, kv := range strings.Fields(steps) {
		if name, ms, ok := strings.Cut(kv, "="); ok {
			r.details = append(r.details, prefix+"."+name+"="+ms)
		}
	}
}

// String is ctx's Recorder's String, "" without one.
func String(ctx context.Context) string {
	r, ok := ctx.Value(recorderKey{}).(*Recorder)
	if !ok {
		return ""
	}
	return r.String()
}

// Len is how many steps were marked.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.steps)
}

// String lists the steps in order with their durations in milliseconds,
// then the total: "spec=0.12 cgroup=1.30 ... total=9.80".
func (r *Recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, s := range r.steps {
		fmt.Fprintf(&b, "%s=%.2f ", s.name, float64(s.took)/float64(time.Millisecond))
	}
	fmt.Fprintf(&b, "total=%.2f", float64(time.Since(r.start))/float64(time.Millisecond))
	for _, d := range r.details {
		b.WriteString(" " + d)
	}
	return b.String()
}
