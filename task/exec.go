package task

import (
	"context"
	"encoding/json"
	"fmt"
	"syscall"

	eventstypes "github.com/containerd/containerd/api/events"
	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/minishim/containerd-shim-mini-v2/linux"
	"github.com/minishim/containerd-shim-mini-v2/process"
)

// Exec records an exec process; Start brings it up (as with runc-v2, where
// the process exists only from Start on).
func (s *Service) Exec(ctx context.Context, r *taskv3.ExecProcessRequest) (*emptypb.Empty, error) {
	if err := s.exec(ctx, r); err != nil {
		return nil, toGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *Service) exec(ctx context.Context, r *taskv3.ExecProcessRequest) error {
	if err := checkID("exec in "+r.ID+": exec id", r.ExecID); err != nil {
		return err
	}
	c, err := s.get(ctx, r.ID)
	if err != nil {
		return err
	}
	switch st := c.init.p.Status(); st {
	case process.Created, process.Running:
	default:
		return fmt.Errorf("exec %s in container %s: the container is %s: %w", r.ExecID, r.ID, st, errdefs.ErrFailedPrecondition)
	}
	if r.Spec == nil || len(r.Spec.GetValue()) == 0 {
		return fmt.Errorf("exec %s in %s: process spec is missing: %w", r.ExecID, r.ID, errdefs.ErrInvalidArgument)
	}
	var spec specs.Process
	if err := json.Unmarshal(r.Spec.GetValue(), &spec); err != nil {
		return fmt.Errorf("exec %s in %s: process spec is not valid: %v: %w", r.ExecID, r.ID, err, errdefs.ErrInvalidArgument)
	}
	if err := linux.ValidateExecProcess(r.ExecID, &spec); err != nil {
		return err
	}
	if r.Terminal != spec.Terminal {
		return fmt.Errorf("exec %s in %s: the request says terminal=%v but the process spec says %v: %w",
			r.ExecID, r.ID, r.Terminal, spec.Terminal, errdefs.ErrInvalidArgument)
	}
	pr := &proc{
		c:      c,
		execID: r.ExecID,
		spec:   &spec,
		stdio:  s.stdioConfig(c.namespace, r.ID, r.Stdin, r.Stdout, r.Stderr, r.Terminal),
	}
	pr.p = process.NewExec(r.ExecID, &execRunner{s: s, pr: pr})
	c.mu.Lock()
	if _, ok := c.execs[r.ExecID]; ok {
		c.mu.Unlock()
		return fmt.Errorf("exec %q in container %q: %w", r.ExecID, r.ID, errdefs.ErrAlreadyExists)
	}
	c.execs[r.ExecID] = pr
	c.mu.Unlock()
	s.cfg.Publisher.Publish(ctx, c.namespace, topicExecAdded, &eventstypes.TaskExecAdded{ContainerID: r.ID, ExecID: r.ExecID})
	return nil
}

// execRunner brings an exec up when it starts and signals it afterwards.
type execRunner struct {
	s  *Service
	pr *proc
	// lp is the exec's process once it was brought up.
	lp *linux.Process
}

// Start opens the exec's IO, spawns it into the container, registers its pid
// (before it can run, so its exit is never lost) and lets it execve().
func (r *execRunner) Start(ctx context.Context) (_ int, retErr error) {
	pr := r.pr
	pipes, err := r.s.openIO(ctx, pr.stdio, pipeOwner(pr.c.ioOwner, pr.spec.User))
	if err != nil {
		return 0, fmt.Errorf("open stdio of exec %s: %w", pr.execID, err)
	}
	in, out, errf := childFiles(pipes)
	lp, err := r.s.runtime.Exec(ctx, pr.c.linux, linux.ExecOpts{
		ID: pr.execID, Process: pr.spec, Stdin: in, Stdout: out, Stderr: errf,
	})
	if err != nil {
		if pipes != nil {
			pipes.Close()
		}
		return 0, err
	}
	io, err := attachIO(ctx, pr.stdio, pipes, lp.Console)
	lp.Console = nil
	if err != nil {
		lp.Abandon()
		return 0, fmt.Errorf("terminal of exec %s: %w", pr.execID, err)
	}
	pr.setIO(io)
	r.lp = lp
	if early, ok := r.s.register(lp.Pid, pr); ok {
		// Only a kill can end a process that has not execve()d yet.
		go r.s.handleExit(context.WithoutCancel(ctx), pr, early)
		err := fmt.Errorf("exec %s exited before it started (status %d): %w", pr.execID, early.Status, errdefs.ErrUnavailable)
		return lp.Pid, pr.c.linux.ExecFailed(pr.execID, err)
	}
	if err := lp.Start(ctx); err != nil {
		// The process reported why and exits; its exit is handled as any.
		return 0, pr.c.linux.ExecFailed(pr.execID, err)
	}
	return lp.Pid, nil
}

// Signal signals the exec; all has no wider meaning for one exec.
func (r *execRunner) Signal(sig syscall.Signal, all bool) error {
	if r.lp == nil {
		return fmt.Errorf("exec %s has not started: %w", r.pr.execID, errdefs.ErrFailedPrecondition)
	}
	if err := r.lp.Signal(sig); err != nil {
		return fmt.Errorf("exec %s: %w", r.pr.execID, err)
	}
	return nil
}

// Pause and Resume apply to whole containers, never to one exec.
func (r *execRunner) Pause() error {
	return fmt.Errorf("pause exec %s: %w", r.pr.execID, errdefs.ErrFailedPrecondition)
}

func (r *execRunner) Resume() error {
	return fmt.Errorf("resume exec %s: %w", r.pr.execID, errdefs.ErrFailedPrecondition)
}

// processDetails is what ctr and crictl show for an exec in `ps`: the
// runc shim's ProcessDetails, which containerd decodes by type.
func processDetails(execID string) *anypb.Any {
	a, err := typeurl.MarshalAnyToProto(&runcoptions.ProcessDetails{ExecID: execID})
	if err != nil {
		return nil
	}
	return a
}
