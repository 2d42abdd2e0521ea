package shim

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/minishim/containerd-shim-mini-v2/process"
)

// Reaper reaps every child of the shim (a child subreaper also inherits
// orphans) and hands out their exits. It implements task.Monitor.
//
// Only one Reaper may run per process: it waits for any child, so anything
// else in the process that runs exec.Cmd.Wait (or Run, Output...) races with
// it and may lose its child's status. Every process the shim spawns has to be
// started through Reaper.Start.
type Reaper struct {
	// mu is held across cmd.Start and the registration of its pid, and by
	// the reap loop while it dispatches. A child that exits before Start
	// returns is therefore reaped first but dispatched only once its pid is
	// registered.
	mu      sync.Mutex
	waiters map[int]chan process.Exit
	subs    map[*exitQueue]struct{}

	sigs chan os.Signal
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// NewReaper starts reaping. Close stops it.
func NewReaper() *Reaper {
	r := &Reaper{
		waiters: make(map[int]chan process.Exit),
		subs:    make(map[*exitQueue]struct{}),
		sigs:    make(chan os.Signal, 32),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	signal.Notify(r.sigs, unix.SIGCHLD)
	go r.loop()
	return r
}

// Close stops reaping and ends every subscription.
func (r *Reaper) Close() {
	r.once.Do(func() {
		signal.Stop(r.sigs)
		close(r.stop)
		<-r.done
		r.mu.Lock()
		defer r.mu.Unlock()
		for q := range r.subs {
			q.close()
		}
		clear(r.subs)
	})
}

// Start starts cmd and returns a channel that receives its exit once.
//
// The reaper collects the child's status, so the caller must never call
// cmd.Wait. Because Wait is never called, os/exec does not close or copy
// anything for the caller: give cmd *os.File stdio (not arbitrary
// io.Reader/io.Writer, which need Wait to finish copying), close the
// parent's ends of any pipes yourself, and do not use exec.CommandContext.
func (r *Reaper) Start(cmd *exec.Cmd) (<-chan process.Exit, error) {
	ch := make(chan process.Exit, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.stop:
		return nil, errors.New("reaper is closed")
	default:
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	r.waiters[cmd.Process.Pid] = ch
	return ch, nil
}

// Subscribe returns every exit the reaper sees from now on, in the order it
// reaped them, until cancel is called; the channel is closed then. A slow
// subscriber never blocks the reaper and never loses an exit.
func (r *Reaper) Subscribe() (<-chan process.Exit, func()) {
	q := newExitQueue()
	r.mu.Lock()
	select {
	case <-r.stop:
		q.close()
	default:
		r.subs[q] = struct{}{}
	}
	r.mu.Unlock()
	cancel := func() {
		r.mu.Lock()
		delete(r.subs, q)
		r.mu.Unlock()
		q.close()
	}
	return q.out, cancel
}

func (r *Reaper) loop() {
	defer close(r.done)
	// Children may have ended before the signal handler was installed.
	r.reapAll()
	for {
		select {
		case <-r.stop:
			return
		case <-r.sigs:
			r.reapAll()
		}
	}
}

// reapAll collects every child that has exited. SIGCHLDs coalesce, so one
// signal can stand for many exits.
func (r *Reaper) reapAll() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		status, ended := process.StatusOf(syscall.WaitStatus(ws))
		if !ended {
			continue
		}
		r.dispatch(process.Exit{Pid: pid, Status: status, Timestamp: time.Now()})
	}
}

func (r *Reaper) dispatch(e process.Exit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ch, ok := r.waiters[e.Pid]; ok {
		delete(r.waiters, e.Pid)
		ch <- e // buffered for exactly this one exit
	}
	for q := range r.subs {
		q.push(e)
	}
}
