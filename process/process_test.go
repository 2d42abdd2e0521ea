package process

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

type fakeRunner struct {
	startErr error
	signals  []syscall.Signal
	all      []bool
}

func (f *fakeRunner) Start(context.Context) (int, error) {
	if f.startErr != nil {
		return 0, f.startErr
	}
	return 42, nil
}

func (f *fakeRunner) Pause() error  { return nil }
func (f *fakeRunner) Resume() error { return nil }

func (f *fakeRunner) Signal(sig syscall.Signal, all bool) error {
	f.signals = append(f.signals, sig)
	f.all = append(f.all, all)
	return nil
}

func TestInitTransitions(t *testing.T) {
	ctx := context.Background()
	type step struct {
		op      string // start, kill, killall, exit, delete
		class   func(error) bool
		wantSt  Status
		signals int
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"normal life", []step{
			{op: "start", wantSt: Running},
			{op: "kill", wantSt: Running, signals: 1},
			{op: "exit", wantSt: Stopped},
			{op: "delete", wantSt: Deleted},
		}},
		{"double start", []step{
			{op: "start", wantSt: Running},
			{op: "start", class: errdefs.IsFailedPrecondition, wantSt: Running},
		}},
		{"delete running", []step{
			{op: "start", wantSt: Running},
			{op: "delete", class: errdefs.IsFailedPrecondition, wantSt: Running},
		}},
		{"delete created", []step{
			{op: "delete", class: errdefs.IsFailedPrecondition, wantSt: Created},
		}},
		{"kill created", []step{
			{op: "kill", wantSt: Created, signals: 1},
			{op: "exit", wantSt: Stopped},
		}},
		{"kill stopped", []step{
			{op: "exit", wantSt: Stopped},
			{op: "kill", class: errdefs.IsNotFound, wantSt: Stopped},
			{op: "killall", wantSt: Stopped, signals: 1},
			{op: "start", class: errdefs.IsFailedPrecondition, wantSt: Stopped},
		}},
		{"after delete", []step{
			{op: "exit", wantSt: Stopped},
			{op: "delete", wantSt: Deleted},
			{op: "delete", class: errdefs.IsNotFound, wantSt: Deleted},
			{op: "kill", class: errdefs.IsNotFound, wantSt: Deleted},
		}},
		{"pause and resume", []step{
			{op: "pause", class: errdefs.IsFailedPrecondition, wantSt: Created},
			{op: "start", wantSt: Running},
			{op: "pause", wantSt: Paused},
			{op: "pause", class: errdefs.IsFailedPrecondition, wantSt: Paused},
			{op: "delete", class: errdefs.IsFailedPrecondition, wantSt: Paused},
			{op: "kill", wantSt: Paused, signals: 1},
			{op: "resume", wantSt: Running},
			{op: "resume", class: errdefs.IsFailedPrecondition, wantSt: Running},
		}},
		{"killed while paused", []step{
			{op: "start", wantSt: Running},
			{op: "pause", wantSt: Paused},
			{op: "exit", wantSt: Stopped},
			{op: "resume", class: errdefs.IsFailedPrecondition, wantSt: Stopped},
		}},
		{"exit twice keeps first", []step{
			{op: "exit", wantSt: Stopped},
			{op: "exit", wantSt: Stopped},
		}},
	}
	execTests := []struct {
		name  string
		steps []step
	}{
		{"exec normal life", []step{
			{op: "start", wantSt: Running},
			{op: "kill", wantSt: Running, signals: 1},
			{op: "exit", wantSt: Stopped},
			{op: "delete", wantSt: Deleted},
		}},
		{"exec kill before start", []step{
			{op: "kill", class: errdefs.IsFailedPrecondition, wantSt: Created},
		}},
		{"exec delete before start", []step{
			{op: "delete", wantSt: Deleted},
			{op: "start", class: errdefs.IsNotFound, wantSt: Deleted},
		}},
		{"exec cannot pause", []step{
			{op: "start", wantSt: Running},
			{op: "pause", class: errdefs.IsFailedPrecondition, wantSt: Running},
		}},
		{"exec kill all after exit", []step{
			{op: "start", wantSt: Running},
			{op: "exit", wantSt: Stopped},
			{op: "killall", class: errdefs.IsNotFound, wantSt: Stopped},
		}},
	}
	type table = []struct {
		name  string
		steps []step
	}
	for _, tt := range append(table(tests), table(execTests)...) {
		t.Run(tt.name, func(t *testing.T) {
			r := &fakeRunner{}
			p := NewInit("c1", 42, r)
			if strings.HasPrefix(tt.name, "exec") {
				p = NewExec("e1", r)
			}
			exits := 0
			for i, s := range tt.steps {
				var err error
				switch s.op {
				case "start":
					err = p.Start(ctx)
				case "kill":
					err = p.Kill(syscall.SIGTERM, false)
				case "killall":
					err = p.Kill(syscall.SIGKILL, true)
				case "exit":
					exits++
					p.SetExited(exits+2, time.Unix(int64(exits), 0))
				case "delete":
					err = p.Delete()
				case "pause":
					err = p.Pause()
				case "resume":
					err = p.Resume()
				}
				if s.class == nil && err != nil {
					t.Fatalf("step %d %s: %v", i, s.op, err)
				}
				if s.class != nil && !s.class(err) {
					t.Fatalf("step %d %s: error %v has the wrong class", i, s.op, err)
				}
				if got := p.Status(); got != s.wantSt {
					t.Fatalf("step %d %s: status %s; want %s", i, s.op, got, s.wantSt)
				}
				if s.signals > 0 && len(r.signals) < s.signals {
					t.Fatalf("step %d %s: %d signals sent", i, s.op, len(r.signals))
				}
			}
			if exits > 0 {
				if p.Pid() != 42 {
					t.Fatalf("pid %d", p.Pid())
				}
				if st, at := p.ExitStatus(); st != 3 || at.Unix() != 1 {
					t.Fatalf("exit status %d at %v; want the first exit", st, at)
				}
			}
		})
	}
}

func TestInitStartFailureKeepsCreated(t *testing.T) {
	boom := errors.New("boom")
	p := NewInit("c1", 42, &fakeRunner{startErr: boom})
	if err := p.Start(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("Start = %v", err)
	}
	if p.Status() != Created {
		t.Fatalf("status %s", p.Status())
	}
}

func TestInitWait(t *testing.T) {
	p := NewInit("c1", 42, &fakeRunner{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := p.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait before exit = %v", err)
	}
	go p.SetExited(0, time.Now())
	if err := p.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}
