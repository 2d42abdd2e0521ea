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
	// Start releases a created process into its user program.
	Start(ctx context.Context) error
	// Signal sends sig to the process, or with all to every process of
	// its container.
	Signal(sig syscall.Signal, all bool) error
}

// Status is a process's place in its life.
type Status string

const (
	Created Status = "created"
	Running Status = "running"
	Stopped Status = "stopped"
	Deleted Status = "deleted"
)

// Init is a container's init process. Its states are types (created,
// running, stopped, deleted) with the same methods; an operation that is
// wrong for a state is refused by that state, so the service never switches
// on a status.
type Init struct {
	ID  string
	Pid int

	runner Runner

	mu       sync.Mutex
	state    initState
	status   int
	exitedAt time.Time
	// done is closed once the exit is fully handled: output drained and
	// TaskExit published.
	done chan struct{}
}

type initState interface {
	status() Status
	start(ctx context.Context) error
	kill(sig syscall.Signal, all bool) error
	exited(status int, at time.Time)
	delete() error
}

// NewInit returns the init of container id, created and waiting for Start.
func NewInit(id string, pid int, r Runner) *Init {
	p := &Init{ID: id, Pid: pid, runner: r, done: make(chan struct{})}
	p.state = &initCreated{p: p}
	return p
}

// Status is the current status.
func (p *Init) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state.status()
}

// Start runs the user's program. The lock is held throughout, so an exit
// seen while starting is applied after the start is recorded.
func (p *Init) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state.start(ctx)
}

// Kill signals the process (or, with all, the whole container).
func (p *Init) Kill(sig syscall.Signal, all bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state.kill(sig, all)
}

// SetExited records the exit; call it once output is drained and the exit
// event is on its way.
func (p *Init) SetExited(status int, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state.exited(status, at)
}

// Delete moves a stopped process to deleted.
func (p *Init) Delete() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state.delete()
}

// Wait blocks until the process stopped or ctx ends.
func (p *Init) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Done is closed when the process stopped.
func (p *Init) Done() <-chan struct{} { return p.done }

// ExitStatus is the exit status and time; zero until stopped.
func (p *Init) ExitStatus() (int, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status, p.exitedAt
}

func (p *Init) recordExit(status int, at time.Time) {
	p.status, p.exitedAt = status, at
	p.state = &initStopped{p: p}
	close(p.done)
}

type initCreated struct{ p *Init }

func (s *initCreated) status() Status { return Created }

func (s *initCreated) start(ctx context.Context) error {
	if err := s.p.runner.Start(ctx); err != nil {
		return err
	}
	s.p.state = &initRunning{p: s.p}
	return nil
}

func (s *initCreated) kill(sig syscall.Signal, all bool) error {
	return s.p.runner.Signal(sig, all)
}

func (s *initCreated) exited(status int, at time.Time) { s.p.recordExit(status, at) }

func (s *initCreated) delete() error {
	return fmt.Errorf("container %s is created but not stopped: kill it first: %w", s.p.ID, errdefs.ErrFailedPrecondition)
}

type initRunning struct{ p *Init }

func (s *initRunning) status() Status { return Running }

func (s *initRunning) start(context.Context) error {
	return fmt.Errorf("container %s is already running: %w", s.p.ID, errdefs.ErrFailedPrecondition)
}

func (s *initRunning) kill(sig syscall.Signal, all bool) error {
	return s.p.runner.Signal(sig, all)
}

func (s *initRunning) exited(status int, at time.Time) { s.p.recordExit(status, at) }

func (s *initRunning) delete() error {
	return fmt.Errorf("cannot delete container %s: its process is running: %w", s.p.ID, errdefs.ErrFailedPrecondition)
}

type initStopped struct{ p *Init }

func (s *initStopped) status() Status { return Stopped }

func (s *initStopped) start(context.Context) error {
	return fmt.Errorf("container %s has stopped and cannot be started again: %w", s.p.ID, errdefs.ErrFailedPrecondition)
}

func (s *initStopped) kill(sig syscall.Signal, all bool) error {
	if all {
		// Processes may outlive init when the container shares the
		// host's pid namespace; kill --all still reaches them.
		return s.p.runner.Signal(sig, true)
	}
	return fmt.Errorf("process %d of container %s already finished: %w", s.p.Pid, s.p.ID, errdefs.ErrNotFound)
}

func (s *initStopped) exited(int, time.Time) {}

func (s *initStopped) delete() error {
	s.p.state = &initDeleted{p: s.p}
	return nil
}

type initDeleted struct{ p *Init }

func (s *initDeleted) status() Status { return Deleted }

func (s *initDeleted) start(context.Context) error { return s.gone() }

func (s *initDeleted) kill(syscall.Signal, bool) error { return s.gone() }

func (s *initDeleted) exited(int, time.Time) {}

func (s *initDeleted) delete() error { return s.gone() }

func (s *initDeleted) gone() error {
	return fmt.Errorf("container %s was deleted: %w", s.p.ID, errdefs.ErrNotFound)
}
