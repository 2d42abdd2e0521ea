// Package task serves containerd's Task API (v2 and v3) over ttrpc: it
// validates requests, maps them to containers and processes, publishes
// events and maps errors to errdefs codes. The work is done by linux/,
// process/ and io/.
package task

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	shimio "github.com/minishim/containerd-shim-mini-v2/io"
	"github.com/minishim/containerd-shim-mini-v2/linux"
	"github.com/minishim/containerd-shim-mini-v2/process"
)

// Event topics containerd listens to.
const (
	topicCreate = "/tasks/create"
	topicStart  = "/tasks/start"
	topicExit   = "/tasks/exit"
	topicDelete = "/tasks/delete"
)

// ioDrainGrace bounds how long an exit waits for output after the process
// is gone: a descendant that escaped the container's kill may hold the pipe.
const ioDrainGrace = 2 * time.Second

// Service implements the Task API for every container of one shim.
type Service struct {
	cfg     Config
	runtime *linux.Runtime

	mu         sync.Mutex
	containers map[string]*container
	byPid      map[int]*container
	// spawning counts creates in flight; while any is, exits of pids we do
	// not know yet are kept in early, since an init can exit before its
	// pid is registered.
	spawning int
	early    map[int]process.Exit
}

// container is one container and its init.
type container struct {
	id     string
	bundle string
	rootfs []*types.Mount
	stdio  shimio.Config

	linux *linux.Container
	init  *process.Init
	pipes *shimio.Pipes

	// lifecycle orders events: TaskCreate and TaskStart are published under
	// it, and the exit handler takes it before TaskExit, so a process that
	// exits at once never has its exit published before its start.
	lifecycle sync.Mutex
}

// NewService builds the task service; it starts consuming exits from
// cfg.Monitor at once.
func NewService(ctx context.Context, cfg Config) (*Service, error) {
	s := &Service{
		cfg:        cfg,
		containers: map[string]*container{},
		byPid:      map[int]*container{},
		early:      map[int]process.Exit{},
	}
	s.runtime = linux.NewRuntime(s.startChild)
	exits, _ := cfg.Monitor.Subscribe()
	go s.handleExits(ctx, exits)
	return s, nil
}

// RegisterTTRPC registers the service as containerd.task.v2.Task and
// containerd.task.v3.Task.
func (s *Service) RegisterTTRPC(srv *ttrpc.Server) {
	taskv3.RegisterTTRPCTaskService(srv, s)
	taskv2.RegisterTTRPCTaskService(srv, v2Bridge{s})
}

func (s *Service) startChild(cmd *exec.Cmd) (<-chan int, error) {
	exits, err := s.cfg.Monitor.Start(cmd)
	if err != nil {
		return nil, err
	}
	statuses := make(chan int, 1)
	go func() {
		if e, ok := <-exits; ok {
			statuses <- e.Status
		}
	}()
	return statuses, nil
}

func (s *Service) get(id string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A nil entry reserves an id whose Create is still running; containerd
	// 2.x may ask for its State meanwhile, and it is not there yet.
	c, ok := s.containers[id]
	if !ok || c == nil {
		return nil, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

func toGRPC(err error) error {
	if err == nil {
		return nil
	}
	return errgrpc.ToGRPC(err)
}

// Create creates a container whose init waits for Start.
func (s *Service) Create(ctx context.Context, r *taskv3.CreateTaskRequest) (*taskv3.CreateTaskResponse, error) {
	resp, err := s.create(ctx, r)
	return resp, toGRPC(err)
}

func (s *Service) create(ctx context.Context, r *taskv3.CreateTaskRequest) (_ *taskv3.CreateTaskResponse, retErr error) {
	if r.ID == "" {
		return nil, fmt.Errorf("create: container id is empty: %w", errdefs.ErrInvalidArgument)
	}
	if r.Checkpoint != "" {
		return nil, fmt.Errorf("create %s from checkpoint: %w", r.ID, errdefs.ErrNotImplemented)
	}
	s.mu.Lock()
	if _, ok := s.containers[r.ID]; ok {
		s.mu.Unlock()
		return nil, fmt.Errorf("container %q: %w", r.ID, errdefs.ErrAlreadyExists)
	}
	// Reserve the id so a concurrent Create of the same id fails too.
	s.containers[r.ID] = nil
	s.spawning++
	s.mu.Unlock()
	registered := false
	defer func() {
		s.mu.Lock()
		if !registered {
			delete(s.containers, r.ID)
		}
		s.spawning--
		if s.spawning == 0 {
			clear(s.early)
		}
		s.mu.Unlock()
	}()

	spec, err := linux.LoadSpec(r.Bundle)
	if err != nil {
		return nil, err
	}
	stdio := shimio.Config{
		Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal,
		ContainerID: r.ID, Namespace: s.cfg.Namespace,
		StartLogger: s.startLogger,
	}
	pipes, err := shimio.New(ctx, stdio, int(spec.Process.User.UID), int(spec.Process.User.GID))
	if err != nil {
		return nil, fmt.Errorf("open stdio of %s: %w", r.ID, err)
	}
	defer func() {
		if retErr != nil {
			pipes.Close()
		}
	}()
	mounts := make([]linux.Mount, 0, len(r.Rootfs))
	for _, m := range r.Rootfs {
		mounts = append(mounts, linux.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	in, out, errf := pipes.ChildFiles()
	lc, err := s.runtime.Create(ctx, linux.CreateOpts{
		ID: r.ID, Bundle: r.Bundle, Spec: spec, Rootfs: mounts,
		Stdin: in, Stdout: out, Stderr: errf,
	})
	if err != nil {
		pipes.CloseChildEnds()
		return nil, err
	}
	pipes.Start()

	c := &container{
		id:     r.ID,
		bundle: r.Bundle,
		rootfs: r.Rootfs,
		stdio:  stdio,
		linux:  lc,
		pipes:  pipes,
	}
	c.init = process.NewInit(r.ID, lc.InitPid, initRunner{lc})
	c.lifecycle.Lock()
	defer c.lifecycle.Unlock()
	s.mu.Lock()
	s.containers[r.ID] = c
	s.byPid[lc.InitPid] = c
	registered = true
	early, exitedEarly := s.early[lc.InitPid]
	delete(s.early, lc.InitPid)
	s.mu.Unlock()

	s.cfg.Publisher.Publish(ctx, topicCreate, &eventstypes.TaskCreate{
		ContainerID: r.ID,
		Bundle:      r.Bundle,
		Rootfs:      r.Rootfs,
		IO:          &eventstypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
		Checkpoint:  r.Checkpoint,
		Pid:         uint32(lc.InitPid),
	})
	if exitedEarly {
		go s.handleInitExit(context.WithoutCancel(ctx), c, early)
	}
	return &taskv3.CreateTaskResponse{Pid: uint32(lc.InitPid)}, nil
}

// initRunner adapts a linux container to process.Runner.
type initRunner struct{ c *linux.Container }

func (r initRunner) Start(ctx context.Context) error { return r.c.Start(ctx) }

func (r initRunner) Signal(sig syscall.Signal, all bool) error { return r.c.Signal(sig, all) }

// startLogger starts a binary:// logging process through the reaper, which
// reaps every child of the shim.
func (s *Service) startLogger(cmd *exec.Cmd) (<-chan struct{}, error) {
	exits, err := s.cfg.Monitor.Start(cmd)
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		<-exits
		close(done)
	}()
	return done, nil
}

// Start releases the container's init into the user's program.
func (s *Service) Start(ctx context.Context, r *taskv3.StartRequest) (*taskv3.StartResponse, error) {
	if r.ExecID != "" {
		return nil, toGRPC(fmt.Errorf("start exec %s: exec processes are not implemented yet: %w", r.ExecID, errdefs.ErrNotImplemented))
	}
	c, err := s.get(r.ID)
	if err != nil {
		return nil, toGRPC(err)
	}
	c.lifecycle.Lock()
	defer c.lifecycle.Unlock()
	if err := c.init.Start(ctx); err != nil {
		return nil, toGRPC(err)
	}
	s.cfg.Publisher.Publish(ctx, topicStart, &eventstypes.TaskStart{ContainerID: c.id, Pid: uint32(c.init.Pid)})
	return &taskv3.StartResponse{Pid: uint32(c.init.Pid)}, nil
}

// handleExits routes every exit the reaper sees to its container.
func (s *Service) handleExits(ctx context.Context, exits <-chan process.Exit) {
	for e := range exits {
		s.mu.Lock()
		c, ok := s.byPid[e.Pid]
		if ok {
			delete(s.byPid, e.Pid)
		} else if s.spawning > 0 {
			s.early[e.Pid] = e
		}
		s.mu.Unlock()
		if ok {
			go s.handleInitExit(ctx, c, e)
		}
	}
}

// handleInitExit finishes a container's init: it kills what is left of a
// container that shares a pid namespace, drains the output, publishes
// TaskExit and only then marks the process stopped, so Wait and Delete see
// an exit whose output and event are complete.
func (s *Service) handleInitExit(ctx context.Context, c *container, e process.Exit) {
	if !c.linux.PrivatePidNamespace() {
		_ = c.linux.KillAll()
	}
	drainCtx, cancel := context.WithTimeout(ctx, ioDrainGrace)
	_ = c.pipes.Wait(drainCtx)
	cancel()

	c.lifecycle.Lock()
	defer c.lifecycle.Unlock()
	s.cfg.Publisher.Publish(ctx, topicExit, &eventstypes.TaskExit{
		ContainerID: c.id,
		ID:          c.id,
		Pid:         uint32(e.Pid),
		ExitStatus:  uint32(e.Status),
		ExitedAt:    timestamppb.New(e.Timestamp),
	})
	c.init.SetExited(e.Status, e.Timestamp)
}

// Delete removes a stopped container (or a created one, which it kills).
func (s *Service) Delete(ctx context.Context, r *taskv3.DeleteRequest) (*taskv3.DeleteResponse, error) {
	if r.ExecID != "" {
		return nil, toGRPC(fmt.Errorf("delete exec %s: exec processes are not implemented yet: %w", r.ExecID, errdefs.ErrNotImplemented))
	}
	c, err := s.get(r.ID)
	if err != nil {
		return nil, toGRPC(err)
	}
	if c.init.Status() == process.Created {
		// containerd deletes a task it created but could not start; runc-v2
		// kills such an init, and so do we.
		if err := c.init.Kill(syscall.SIGKILL, false); err != nil && !errdefs.IsNotFound(err) {
			return nil, toGRPC(err)
		}
		if err := c.init.Wait(ctx); err != nil {
			return nil, toGRPC(err)
		}
	}
	if err := c.init.Delete(); err != nil {
		return nil, toGRPC(err)
	}
	var errs error
	if err := c.linux.Destroy(ctx); err != nil {
		errs = fmt.Errorf("delete container %s: %w", c.id, err)
	}
	c.pipes.Close()
	s.mu.Lock()
	delete(s.containers, c.id)
	s.mu.Unlock()

	status, at := c.init.ExitStatus()
	s.cfg.Publisher.Publish(ctx, topicDelete, &eventstypes.TaskDelete{
		ContainerID: c.id,
		ID:          c.id,
		Pid:         uint32(c.init.Pid),
		ExitStatus:  uint32(status),
		ExitedAt:    timestamppb.New(at),
	})
	if errs != nil {
		return nil, toGRPC(errs)
	}
	return &taskv3.DeleteResponse{Pid: uint32(c.init.Pid), ExitStatus: uint32(status), ExitedAt: timestamppb.New(at)}, nil
}

// Kill signals init, or every process of the container with all.
func (s *Service) Kill(ctx context.Context, r *taskv3.KillRequest) (*emptypb.Empty, error) {
	if r.ExecID != "" {
		return nil, toGRPC(fmt.Errorf("kill exec %s: exec processes are not implemented yet: %w", r.ExecID, errdefs.ErrNotImplemented))
	}
	c, err := s.get(r.ID)
	if err != nil {
		return nil, toGRPC(err)
	}
	if r.Signal == 0 || r.Signal > 64 {
		return nil, toGRPC(fmt.Errorf("kill %s: signal %d is out of range: %w", r.ID, r.Signal, errdefs.ErrInvalidArgument))
	}
	if err := c.init.Kill(syscall.Signal(r.Signal), r.All); err != nil {
		return nil, toGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

// State reports the container's init.
func (s *Service) State(ctx context.Context, r *taskv3.StateRequest) (*taskv3.StateResponse, error) {
	if r.ExecID != "" {
		return nil, toGRPC(fmt.Errorf("state of exec %s: %w", r.ExecID, errdefs.ErrNotFound))
	}
	c, err := s.get(r.ID)
	if err != nil {
		return nil, toGRPC(err)
	}
	status, at := c.init.ExitStatus()
	resp := &taskv3.StateResponse{
		ID:         c.id,
		Bundle:     c.bundle,
		Pid:        uint32(c.init.Pid),
		Status:     statusOf(c.init.Status()),
		Stdin:      c.stdio.Stdin,
		Stdout:     c.stdio.Stdout,
		Stderr:     c.stdio.Stderr,
		Terminal:   c.stdio.Terminal,
		ExitStatus: uint32(status),
	}
	if !at.IsZero() {
		resp.ExitedAt = timestamppb.New(at)
	}
	return resp, nil
}

func statusOf(st process.Status) tasktypes.Status {
	switch st {
	case process.Created:
		return tasktypes.Status_CREATED
	case process.Running:
		return tasktypes.Status_RUNNING
	case process.Stopped, process.Deleted:
		return tasktypes.Status_STOPPED
	}
	return tasktypes.Status_UNKNOWN
}

// Wait blocks until init exited, its output drained and TaskExit was sent.
func (s *Service) Wait(ctx context.Context, r *taskv3.WaitRequest) (*taskv3.WaitResponse, error) {
	if r.ExecID != "" {
		return nil, toGRPC(fmt.Errorf("wait for exec %s: %w", r.ExecID, errdefs.ErrNotFound))
	}
	c, err := s.get(r.ID)
	if err != nil {
		return nil, toGRPC(err)
	}
	if err := c.init.Wait(ctx); err != nil {
		return nil, toGRPC(err)
	}
	status, at := c.init.ExitStatus()
	return &taskv3.WaitResponse{ExitStatus: uint32(status), ExitedAt: timestamppb.New(at)}, nil
}

// Pids lists the processes of the container.
func (s *Service) Pids(ctx context.Context, r *taskv3.PidsRequest) (*taskv3.PidsResponse, error) {
	c, err := s.get(r.ID)
	if err != nil {
		return nil, toGRPC(err)
	}
	pids, err := c.linux.Pids()
	if err != nil {
		return nil, toGRPC(err)
	}
	resp := &taskv3.PidsResponse{}
	for _, pid := range pids {
		resp.Processes = append(resp.Processes, &tasktypes.ProcessInfo{Pid: uint32(pid)})
	}
	return resp, nil
}

// CloseIO closes init's stdin.
func (s *Service) CloseIO(ctx context.Context, r *taskv3.CloseIORequest) (*emptypb.Empty, error) {
	if r.ExecID != "" {
		return nil, toGRPC(fmt.Errorf("close io of exec %s: %w", r.ExecID, errdefs.ErrNotFound))
	}
	c, err := s.get(r.ID)
	if err != nil {
		return nil, toGRPC(err)
	}
	if r.Stdin {
		if err := c.pipes.CloseStdin(); err != nil {
			return nil, toGRPC(err)
		}
	}
	return &emptypb.Empty{}, nil
}

// Connect tells containerd the shim's and the task's pids.
func (s *Service) Connect(ctx context.Context, r *taskv3.ConnectRequest) (*taskv3.ConnectResponse, error) {
	resp := &taskv3.ConnectResponse{ShimPid: uint32(os.Getpid()), Version: "containerd-shim-mini-v2"}
	if c, err := s.get(r.ID); err == nil {
		resp.TaskPid = uint32(c.init.Pid)
	}
	return resp, nil
}

// Shutdown ends the shim once no container is left.
func (s *Service) Shutdown(ctx context.Context, r *taskv3.ShutdownRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	left := len(s.containers)
	s.mu.Unlock()
	if left > 0 {
		return &emptypb.Empty{}, nil
	}
	if s.cfg.Shutdown != nil {
		// After the reply: the caller must get its answer before the
		// socket goes away.
		go s.cfg.Shutdown()
	}
	return &emptypb.Empty{}, nil
}

func notImplemented(what string) error {
	return toGRPC(fmt.Errorf("%s is not implemented yet: %w", what, errdefs.ErrNotImplemented))
}

// Pause is not implemented yet.
func (s *Service) Pause(ctx context.Context, r *taskv3.PauseRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("pause")
}

// Resume is not implemented yet.
func (s *Service) Resume(ctx context.Context, r *taskv3.ResumeRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("resume")
}

// Checkpoint is not implemented yet.
func (s *Service) Checkpoint(ctx context.Context, r *taskv3.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("checkpoint")
}

// Exec is not implemented yet.
func (s *Service) Exec(ctx context.Context, r *taskv3.ExecProcessRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("exec")
}

// ResizePty is not implemented yet: terminals come with exec.
func (s *Service) ResizePty(ctx context.Context, r *taskv3.ResizePtyRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("resize pty")
}

// Update is not implemented yet.
func (s *Service) Update(ctx context.Context, r *taskv3.UpdateTaskRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("update")
}

// Stats is not implemented yet.
func (s *Service) Stats(ctx context.Context, r *taskv3.StatsRequest) (*taskv3.StatsResponse, error) {
	return nil, notImplemented("stats")
}

// Cleanup is what `containerd-shim-mini-v2 delete` runs when containerd lost
// the shim: kill what is left of the container, unmount, remove its cgroup
// and state, and say how it ended (137: killed, as runc-v2 reports).
func Cleanup(ctx context.Context, namespace, id, bundle string) (*taskv3.DeleteResponse, error) {
	pid, err := linux.Cleanup(ctx, bundle)
	if err != nil {
		return nil, fmt.Errorf("clean up container %s: %w", id, err)
	}
	return &taskv3.DeleteResponse{
		Pid:        uint32(pid),
		ExitStatus: 128 + uint32(syscall.SIGKILL),
		ExitedAt:   timestamppb.New(time.Now()),
	}, nil
}
