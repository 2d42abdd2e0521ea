package process

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
)

// Runner is what a process needs from the layer that actually runs it.
type Runner interface {
	// Start runs the user program of a created process and returns its
	// pid: it releases an init that waits, or brings an exec up.
	Start(ctx context.Context) (pid int, err error)
	// Signal sends sig to the process, or with all to every process of
	// its container.
	Signal(sig syscall.Signal, all bool) error
	// Pause and Resume freeze and thaw the container (init only).
	Pause() error
	Resume() error
}

// Status is a process's place in its life.
type Status string

const (
	Created Status = "created"
	Running Status = "running"
	Paused  Status = "paused"
	Stopped Status = "stopped"
	Deleted Status = "deleted"
)

// Process is a container's init or one of its exec processes. Its states
// are types (created, running, stopped, deleted) with the same methods; an
// operation that is wrong for a state is refused by that state, so the
// service never switches on a status.
//
// An init exists from Create on and waits in created for Start; an exec is
// only a spec until Start brings it up, so it has no pid in created and may
// be deleted without ever running.
type Process struct {
	// ID is the container id for init, the exec id for an exec.
	ID   string
	exec bool

	runner Runner

	mu       sync.Mutex
	pid      int
	state    state
	status   int
	exitedAt time.Time
	// done is closed once the exit is fully handled: output drained and
	// TaskExit published.
	done chan struct{}
}

type state interface {
	status() Status
	start(ctx context.Context) error
	kill(sig syscall.Signal, all bool) error
	exited(status int, at time.Time)
	delete() error
	pause() error
	resume() error
}

// NewInit returns the init of container id, created and waiting for Start.
func NewInit(id string, pid int, r Runner) *Process {
	p := &Process{ID: id, pid: pid, runner: r, done: make(chan struct{})}
	p.state = &created{p: p}
	return p
}

// NewExec returns exec process id, recorded but not running.
func NewExec(id string, r Runner) *Process {
	p := &Process{ID: id, exec: true, runner: r, done: make(chan struct{})}
	p.state = &created{p: p}
	return p
}

// Pid is the process's pid; 0 for an exec that has not started.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

func (p *Process) kind() string {
	if p.exec {
		return "exec"
	}
	return "container"
}

// Status is the current status.
func (p *Process) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state.status()
}

// Start runs the user's program. The lock is held throughout, so an exit
// seen while starting is applied after the start is recorded.
func (p *Process) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state.start(ctx)
}

// Kill signals the process (or, with all, the whole container).
func (p *Process) Kill(sig syscall.Signal, all bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state.kill(sig, all)
}

// Pause freezes a running container.
func (p *Process) Pause() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state.pause()
}

// Resume thaws a paused container.
func (p *Process) Resume() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state.resume()
}

// SetExited records the exit; call it once output is drained and the exit
// event is on its way.
func (p *Process) SetExited(status int, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state.exited(status, at)
}

// Delete moves a stopped process to deleted.
func (p *Process) Delete() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state.delete()
}

// Wait blocks until the process stopped or ctx ends.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ExitStatus is the exit status and time; zero until stopped.
func (p *Process) ExitStatus() (int, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status, p.exitedAt
}

func (p *Process) notWhile(op string, st Status) error {
	return fmt.Errorf("cannot %s %s %s: it is %s: %w", op, p.kind(), p.ID, st, errdefs.ErrFailedPrecondition)
}

func (p *Process) recordExit(status int, at time.Time) {
	p.status, p.exitedAt = status, at
	p.state = &stopped{p: p}
	close(p.done)
}

type created struct{ p *Process }

func (s *created) status() Status { return Created }

func (s *created) start(ctx context.Context) error {
	pid, err := s.p.runner.Start(ctx)
	if err != nil {
		return err
	}
	s.p.pid = pid
	s.p.state = &running{p: s.p}
	return nil
}

func (s *created) kill(sig syscall.Signal, all bool) error {
	if s.p.exec {
		return fmt.Errorf("exec %s has not started: %w", s.p.ID, errdefs.ErrFailedPrecondition)
	}
	return s.p.runner.Signal(sig, all)
}

func (s *created) exited(status int, at time.Time) { s.p.recordExit(status, at) }

func (s *created) pause() error { return s.p.notWhile("pause", Created) }

func (s *created) resume() error { return s.p.notWhile("resume", Created) }

func (s *created) delete() error {
	if s.p.exec || s.p.pid == 0 {
		// Never started (an exec, or an init still to be restored from a
		// checkpoint): there is nothing to wait for.
		s.p.state = &deleted{p: s.p}
		return nil
	}
	return fmt.Errorf("container %s is created but not stopped: kill it first: %w", s.p.ID, errdefs.ErrFailedPrecondition)
}

type running struct{ p *Process }

func (s *running) status() Status { return Running }

func (s *running) start(context.Context) error {
	return fmt.Errorf("%s %s is already running: %w", s.p.kind(), s.p.ID, errdefs.ErrFailedPrecondition)
}

func (s *running) kill(sig syscall.Signal, all bool) error {
	return s.p.runner.Signal(sig, all)
}

func (s *running) exited(status int, at time.Time) { s.p.recordExit(status, at) }

func (s *running) pause() error {
	if s.p.exec {
		return fmt.Errorf("pause exec %s: pause the container instead: %w", s.p.ID, errdefs.ErrFailedPrecondition)
	}
	if err := s.p.runner.Pause(); err != nil {
		return err
	}
	s.p.state = &paused{p: s.p}
	return nil
}

func (s *running) resume() error { return s.p.notWhile("resume", Running) }

// paused is a frozen container. Signals are queued by the kernel and act
// on thaw; an exit (say, a SIGKILL) still moves it to stopped.
type paused struct{ p *Process }

func (s *paused) status() Status { return Paused }

func (s *paused) start(context.Context) error { return s.p.notWhile("start", Paused) }

func (s *paused) kill(sig syscall.Signal, all bool) error { return s.p.runner.Signal(sig, all) }

func (s *paused) exited(status int, at time.Time) { s.p.recordExit(status, at) }

func (s *paused) delete() error {
	return fmt.Errorf("cannot delete %s %s: it is paused: %w", s.p.kind(), s.p.ID, errdefs.ErrFailedPrecondition)
}

func (s *paused) pause() error { return s.p.notWhile("pause", Paused) }

func (s *paused) resume() error {
	if err := s.p.runner.Resume(); err != nil {
		return err
	}
	s.p.state = &running{p: s.p}
	return nil
}

func (s *running) delete() error {
	return fmt.Errorf("cannot delete %s %s: its process is running: %w", s.p.kind(), s.p.ID, errdefs.ErrFailedPrecondition)
}

type stopped struct{ p *Process }

func (s *stopped) status() Status { return Stopped }

func (s *stopped) start(context.Context) error {
	return fmt.Errorf("%s %s has stopped and cannot be started again: %w", s.p.kind(), s.p.ID, errdefs.ErrFailedPrecondition)
}

func (s *stopped) kill(sig syscall.Signal, all bool) error {
	if all && !s.p.exec {
		// Processes may outlive init when the container shares the
		// host's pid namespace; kill --all still reaches them.
		return s.p.runner.Signal(sig, true)
	}
	return fmt.Errorf("process %d of %s %s already finished: %w", s.p.pid, s.p.kind(), s.p.ID, errdefs.ErrNotFound)
}

func (s *stopped) exited(int, time.Time) {}

func (s *stopped) pause() error { return s.p.notWhile("pause", Stopped) }

func (s *stopped) resume() error { return s.p.notWhile("resume", Stopped) }

func (s *stopped) delete() error {
	s.p.state = &deleted{p: s.p}
	return nil
}

type deleted struct{ p *Process }

func (s *deleted) status() Status { return Deleted }

func (s *deleted) start(context.Context) error { return s.gone() }

func (s *deleted) kill(syscall.Signal, bool) error { return s.gone() }

func (s *deleted) exited(int, time.Time) {}

func (s *deleted) pause() error { return s.gone() }

func (s *deleted) resume() error { return s.gone() }

func (s *deleted) delete() error { return s.gone() }

func (s *deleted) gone() error {
	return fmt.Errorf("%s %s was deleted: %w", s.p.kind(), s.p.ID, errdefs.ErrNotFound)
}
