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
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	shimio "github.com/minishim/containerd-shim-mini-v2/io"
	"github.com/minishim/containerd-shim-mini-v2/linux"
	"github.com/minishim/containerd-shim-mini-v2/process"
	"github.com/minishim/containerd-shim-mini-v2/runtimeopts"
	"github.com/minishim/containerd-shim-mini-v2/steptime"
)

// Event topics containerd listens to.
const (
	topicCreate       = "/tasks/create"
	topicStart        = "/tasks/start"
	topicExit         = "/tasks/exit"
	topicDelete       = "/tasks/delete"
	topicExecAdded    = "/tasks/exec-added"
	topicExecStarted  = "/tasks/exec-started"
	topicPaused       = "/tasks/paused"
	topicResumed      = "/tasks/resumed"
	topicOOM          = "/tasks/oom"
	topicCheckpointed = "/tasks/checkpointed"
)

// ioDrainGrace bounds how long an exit waits for output after the process
// is gone: a descendant that escaped the container's kill, or a background
// child of an exec, may hold the pipe open.
const ioDrainGrace = 2 * time.Second

// Service implements the Task API for every container of one shim.
type Service struct {
	cfg     Config
	runtime *linux.Runtime

	mu         sync.Mutex
	containers map[string]*container
	byPid      map[int]*proc
	// spawning counts creates and exec starts in flight; while any is,
	// exits of pids we do not know yet are kept in early, since a process
	// can exit before its pid is registered.
	spawning int
	early    map[int]process.Exit
	// shuttingDown: a Shutdown found no container and ends the shim; a
	// Create that reached it since (a grouped start that connected just
	// before) must not start a container nobody will serve.
	shuttingDown bool
}

// container is one container: its init and its exec processes.
type container struct {
	id        string
	namespace string // containerd's, whose requests reach this container
	bundle    string
	linux     *linux.Container
	init      *proc
	// stopOOM ends the OOM watch at Delete.
	stopOOM chan struct{}
	// ioOwner owns the stdio pipes of its processes (runc-v2's IoUid and
	// IoGid options); nil: each process's own user.
	ioOwner *specs.User

	mu    sync.Mutex
	execs map[string]*proc
}

// proc is a process the service tracks: a container's init or an exec.
type proc struct {
	c      *container
	execID string // empty for init
	p      *process.Process
	stdio  shimio.Config
	spec   *specs.Process // an exec's process spec

	ioMu sync.Mutex
	io   stdio // nil until the process has its IO
	// size is a window size asked for before the terminal existed
	// (ctr resizes an exec before it starts it); applied when it does.
	size *[2]uint32

	// lifecycle orders events: create/start events are published under
	// it, and the exit handler takes it before TaskExit, so a process that
	// exits at once never has its exit published before its start.
	lifecycle sync.Mutex
}

// stdio is a process's IO: pipes, or a terminal (which also resizes).
type stdio interface {
	CloseStdin() error
	Wait(ctx context.Context) error
	Close() error
}

func (pr *proc) id() string {
	if pr.execID != "" {
		return pr.execID
	}
	return pr.c.id
}

type resizer interface{ Resize(w, h uint32) error }

func (pr *proc) setIO(s stdio) {
	pr.ioMu.Lock()
	defer pr.ioMu.Unlock()
	pr.io = s
	if r, ok := s.(resizer); ok && pr.size != nil {
		_ = r.Resize(pr.size[0], pr.size[1])
	}
}

// resize sets the terminal's size, or keeps it for when the terminal of a
// process that has not started yet exists.
func (pr *proc) resize(w, h uint32) error {
	pr.ioMu.Lock()
	defer pr.ioMu.Unlock()
	if !pr.stdio.Terminal {
		return fmt.Errorf("resize %s: the process has no terminal: %w", pr.id(), errdefs.ErrFailedPrecondition)
	}
	if r, ok := pr.io.(resizer); ok {
		if err := r.Resize(w, h); err != nil {
			return fmt.Errorf("resize %s: %w", pr.id(), err)
		}
		return nil
	}
	pr.size = &[2]uint32{w, h}
	return nil
}

func (pr *proc) getIO() stdio {
	pr.ioMu.Lock()
	defer pr.ioMu.Unlock()
	return pr.io
}

// NewService builds the task service; it starts consuming exits from
// cfg.Monitor at once.
func NewService(ctx context.Context, cfg Config) *Service {
	s := &Service{
		cfg:        cfg,
		containers: map[string]*container{},
		byPid:      map[int]*proc{},
		early:      map[int]process.Exit{},
	}
	s.runtime = linux.NewRuntime(s.startChild)
	exits, _ := cfg.Monitor.Subscribe()
	go s.handleExits(ctx, exits)
	return s
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

// namespaceKey is the ttrpc metadata key containerd names a request's
// namespace by.
const namespaceKey = "containerd-namespace-ttrpc"

// requestNamespace is the containerd namespace a request comes from: a
// shim shared by every namespace (the node grouping) tells its containers
// apart by it. A request without one is the shim's own namespace's.
func (s *Service) requestNamespace(ctx context.Context) string {
	if ns, ok := ttrpc.GetMetadataValue(ctx, namespaceKey); ok && ns != "" {
		return ns
	}
	return s.cfg.Namespace
}

// containerKey keys s.containers: ids are unique per namespace only.
func containerKey(namespace, id string) string { return namespace + "/" + id }

func (s *Service) get(ctx context.Context, id string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A nil entry reserves an id whose Create is still running; containerd
	// 2.x may ask for its State meanwhile, and it is not there yet.
	c, ok := s.containers[containerKey(s.requestNamespace(ctx), id)]
	if !ok || c == nil {
		return nil, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

// getProc finds init (execID empty) or an exec of container id.
func (s *Service) getProc(ctx context.Context, id, execID string) (*proc, error) {
	c, err := s.get(ctx, id)
	if err != nil {
		return nil, err
	}
	if execID == "" {
		return c.init, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	pr, ok := c.execs[execID]
	if !ok {
		return nil, fmt.Errorf("exec %q in container %q: %w", execID, id, errdefs.ErrNotFound)
	}
	return pr, nil
}

func toGRPC(err error) error {
	if err == nil {
		return nil
	}
	return errgrpc.ToGRPC(err)
}

// beginSpawn and endSpawn bracket the time a new pid may exit before it is
// registered; register records it and hands over an exit that came early.
func (s *Service) beginSpawn() {
	s.mu.Lock()
	s.spawning++
	s.mu.Unlock()
}

func (s *Service) endSpawn() {
	s.mu.Lock()
	s.spawning--
	if s.spawning == 0 {
		clear(s.early)
	}
	s.mu.Unlock()
}

func (s *Service) register(pid int, pr *proc) (process.Exit, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byPid[pid] = pr
	e, ok := s.early[pid]
	if ok {
		delete(s.early, pid)
		delete(s.byPid, pid)
	}
	return e, ok
}

// pipeOwner is who owns a process's stdio pipes: the container's IoUid and
// IoGid when set, else the process's user (so that a process running as
// another user can still reopen its /dev/stdout).
func pipeOwner(ioOwner *specs.User, user specs.User) specs.User {
	if ioOwner != nil {
		return *ioOwner
	}
	return user
}

// openIO opens a process's non-terminal stdio; terminals get theirs once
// the process sent its pty master.
func (s *Service) openIO(ctx context.Context, cfg shimio.Config, user specs.User) (*shimio.Pipes, error) {
	if cfg.Terminal {
		return nil, nil
	}
	return shimio.New(ctx, cfg, int(user.UID), int(user.GID))
}

func childFiles(p *shimio.Pipes) (in, out, errf *os.File) {
	if p == nil {
		return nil, nil, nil
	}
	return p.ChildFiles()
}

// stdioConfig is the IO a request names for a process of container id.
func (s *Service) stdioConfig(namespace, id, stdin, stdout, stderr string, terminal bool) shimio.Config {
	return shimio.Config{
		Stdin: stdin, Stdout: stdout, Stderr: stderr, Terminal: terminal,
		ContainerID: id, Namespace: namespace, StartLogger: s.startLogger,
	}
}

// attachIO is a spawned process's IO: its pipes, started now, or (without
// pipes) a Console on the pty master it sent, which the Console owns from
// here on, also when it fails.
func attachIO(ctx context.Context, cfg shimio.Config, pipes *shimio.Pipes, master *os.File) (stdio, error) {
	if pipes != nil {
		pipes.Start()
		return pipes, nil
	}
	return shimio.NewConsole(ctx, cfg, master)
}

// Create creates a container whose init waits for Start.
func (s *Service) Create(ctx context.Context, r *taskv3.CreateTaskRequest) (*taskv3.CreateTaskResponse, error) {
	resp, err := s.create(ctx, r)
	return resp, toGRPC(err)
}

func (s *Service) create(ctx context.Context, r *taskv3.CreateTaskRequest) (_ *taskv3.CreateTaskResponse, retErr error) {
	if err := checkID("create: container id", r.ID); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.shuttingDown {
		s.mu.Unlock()
		return nil, fmt.Errorf("create %s: this shim (pid %d) is shutting down: %w", r.ID, s.cfg.ShimPid, errdefs.ErrUnavailable)
	}
	namespace := s.requestNamespace(ctx)
	key := containerKey(namespace, r.ID)
	if _, ok := s.containers[key]; ok {
		s.mu.Unlock()
		return nil, fmt.Errorf("container %q: %w", r.ID, errdefs.ErrAlreadyExists)
	}
	// Reserve the id so a concurrent Create of the same id fails too.
	s.containers[key] = nil
	s.spawning++
	s.mu.Unlock()
	registered := false
	defer func() {
		if !registered {
			s.mu.Lock()
			delete(s.containers, key)
			s.mu.Unlock()
		}
		s.endSpawn()
	}()

	ropts, err := runtimeopts.Decode(r.Options)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", r.ID, err)
	}
	if r.ParentCheckpoint != "" {
		// containerd never sends it; a restore follows the parent link
		// CRIU keeps in the images, and a path given beside is refused
		// rather than ignored.
		return nil, fmt.Errorf("create %s: parent_checkpoint %q is not supported by this runtime's restore: %w", r.ID, r.ParentCheckpoint, errdefs.ErrNotImplemented)
	}
	checkpoint := r.Checkpoint
	if checkpoint == "" {
		// containerd 1.6 turns the options' CriuImagePath (the Go
		// client's WithRestoreImagePath) into Checkpoint only for
		// runtimes named io.containerd.runc*; for this one it comes as
		// it is, and a restore asked for is a restore.
		checkpoint = ropts.CriuImagePath
	}
	spec, err := linux.LoadSpec(r.Bundle)
	if err != nil {
		return nil, err
	}
	steptime.Mark(ctx, "load-spec")
	if r.Terminal != spec.Process.Terminal {
		return nil, fmt.Errorf("create %s: the request says terminal=%v but config.json says process.terminal=%v: %w",
			r.ID, r.Terminal, spec.Process.Terminal, errdefs.ErrInvalidArgument)
	}
	ioCfg := s.stdioConfig(namespace, r.ID, r.Stdin, r.Stdout, r.Stderr, r.Terminal)
	var ioOwner *specs.User
	if ropts.IoUid != 0 || ropts.IoGid != 0 {
		ioOwner = &specs.User{UID: ropts.IoUid, GID: ropts.IoGid}
	}
	pipes, err := s.openIO(ctx, ioCfg, pipeOwner(ioOwner, spec.Process.User))
	if err != nil {
		return nil, fmt.Errorf("open stdio of %s: %w", r.ID, err)
	}
	defer func() {
		if retErr != nil && pipes != nil {
			pipes.Close()
		}
	}()
	steptime.Mark(ctx, "open-io")
	mounts := make([]linux.Mount, 0, len(r.Rootfs))
	for _, m := range r.Rootfs {
		mounts = append(mounts, linux.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	in, out, errf := childFiles(pipes)
	createOpts := linux.CreateOpts{
		ID: r.ID, Bundle: r.Bundle, Spec: spec, Rootfs: mounts,
		Stdin: in, Stdout: out, Stderr: errf,
		SystemdCgroup: ropts.SystemdCgroup,
		NoPivotRoot:   ropts.NoPivotRoot,
		NoNewKeyring:  ropts.NoNewKeyring,
	}
	if checkpoint != "" {
		// As runc-v2: the process comes back at Start.
		createOpts.Stdin, createOpts.Stdout, createOpts.Stderr = nil, nil, nil
		createOpts.Restore = &linux.RestoreOpts{ImagePath: checkpoint, WorkPath: ropts.CriuWorkPath, Stdin: in, Stdout: out, Stderr: errf}
	}
	lc, err := s.runtime.Create(ctx, createOpts)
	if err != nil {
		return nil, err
	}
	var io stdio
	if checkpoint != "" {
		// Started once the restored process holds the child ends; a
		// restore that never happens closes them at Delete.
		if pipes != nil {
			io = pipes
		}
	} else if io, err = attachIO(ctx, ioCfg, pipes, lc.Console); err != nil {
		lc.Console = nil
		if derr := lc.Destroy(context.WithoutCancel(ctx)); derr != nil {
			err = fmt.Errorf("%w (and cleaning up failed: %v)", err, derr)
		}
		return nil, fmt.Errorf("terminal of %s: %w", r.ID, err)
	}
	lc.Console = nil

	c := &container{id: r.ID, namespace: namespace, bundle: r.Bundle, linux: lc, execs: map[string]*proc{}, stopOOM: make(chan struct{}), ioOwner: ioOwner}
	c.init = &proc{c: c, stdio: ioCfg, io: io}
	var runner process.Runner = initRunner{lc}
	if checkpoint != "" {
		runner = &restoreRunner{initRunner: initRunner{lc}, s: s, pr: c.init, pipes: pipes}
	}
	c.init.p = process.NewInit(r.ID, lc.InitPid, runner)
	c.init.lifecycle.Lock()
	defer c.init.lifecycle.Unlock()
	s.mu.Lock()
	s.containers[key] = c
	registered = true
	s.mu.Unlock()
	var early process.Exit
	exitedEarly := false
	if lc.InitPid > 0 {
		early, exitedEarly = s.register(lc.InitPid, c.init)
	}

	s.cfg.Publisher.Publish(ctx, namespace, topicCreate, &eventstypes.TaskCreate{
		ContainerID: r.ID,
		Bundle:      r.Bundle,
		Rootfs:      r.Rootfs,
		IO:          &eventstypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
		Checkpoint:  r.Checkpoint,
		Pid:         uint32(lc.InitPid),
	})
	if exitedEarly {
		go s.handleExit(context.WithoutCancel(ctx), c.init, early)
	}
	// An OOM watch that cannot start costs events, not the container.
	pubCtx := context.WithoutCancel(ctx)
	steptime.Mark(ctx, "register")
	_ = lc.WatchOOM(c.stopOOM, func() {
		s.cfg.Publisher.Publish(pubCtx, c.namespace, topicOOM, &eventstypes.TaskOOM{ContainerID: c.id})
	})
	steptime.Mark(ctx, "oom-watch")
	return &taskv3.CreateTaskResponse{Pid: uint32(lc.InitPid)}, nil
}

// initRunner adapts a linux container to process.Runner.
type initRunner struct{ c *linux.Container }

func (r initRunner) Start(ctx context.Context) (int, error) {
	err := r.c.Start(ctx)
	return r.c.InitPid, err
}

// restoreRunner brings a container's init back from a checkpoint at Start,
// and is its init's runner from then on.
type restoreRunner struct {
	initRunner
	s     *Service
	pr    *proc
	pipes *shimio.Pipes // nil: no pipes (a terminal)
}

// Start restores the container (CRIU hands the new stdio to the restored
// tree), starts copying its output, or a terminal's on the new pty master
// CRIU handed over, and registers its pid; an exit that comes first is
// kept while the restore is under way.
func (r *restoreRunner) Start(ctx context.Context) (int, error) {
	r.s.beginSpawn()
	defer r.s.endSpawn()
	if err := r.c.Start(ctx); err != nil {
		return 0, err
	}
	io, err := attachIO(ctx, r.pr.stdio, r.pipes, r.c.Console)
	r.c.Console = nil
	if err != nil {
		_ = r.c.Signal(syscall.SIGKILL, true)
		return 0, fmt.Errorf("terminal of restored %s: %w", r.pr.c.id, err)
	}
	r.pr.setIO(io)
	pid := r.c.InitPid
	if early, ok := r.s.register(pid, r.pr); ok {
		go r.s.handleExit(context.WithoutCancel(ctx), r.pr, early)
	}
	return pid, nil
}

func (r initRunner) Signal(sig syscall.Signal, all bool) error { return r.c.Signal(sig, all) }

func (r initRunner) Pause() error { return r.c.Pause() }

func (r initRunner) Resume() error { return r.c.Resume() }

// Start releases the container's init, or brings an exec up and runs it.
func (s *Service) Start(ctx context.Context, r *taskv3.StartRequest) (*taskv3.StartResponse, error) {
	pr, err := s.getProc(ctx, r.ID, r.ExecID)
	if err != nil {
		return nil, toGRPC(err)
	}
	pid, err := s.start(ctx, pr)
	if err != nil {
		if pr.execID == "" && pr.p.Pid() > 0 {
			// Init reported why it could not start and exits, or a
			// poststart hook failed and it was killed. Answer once its
			// exit is recorded, so the task is stopped, not created, and
			// the client's delete of it goes through.
			wctx, cancel := context.WithTimeout(ctx, failedStartWait)
			_ = pr.p.Wait(wctx)
			cancel()
		}
		return nil, toGRPC(err)
	}
	return &taskv3.StartResponse{Pid: uint32(pid)}, nil
}

// failedStartWait bounds how long a failed Start waits for init's exit.
const failedStartWait = 5 * time.Second

// start starts the process and publishes its start under its lifecycle
// lock, which its exit handler takes too.
func (s *Service) start(ctx context.Context, pr *proc) (int, error) {
	pr.lifecycle.Lock()
	defer pr.lifecycle.Unlock()
	if pr.execID != "" {
		s.beginSpawn()
		defer s.endSpawn()
	}
	if err := pr.p.Start(ctx); err != nil {
		return 0, err
	}
	pid := pr.p.Pid()
	if pr.execID == "" {
		s.cfg.Publisher.Publish(ctx, pr.c.namespace, topicStart, &eventstypes.TaskStart{ContainerID: pr.c.id, Pid: uint32(pid)})
	} else {
		s.cfg.Publisher.Publish(ctx, pr.c.namespace, topicExecStarted, &eventstypes.TaskExecStarted{ContainerID: pr.c.id, ExecID: pr.execID, Pid: uint32(pid)})
	}
	return pid, nil
}

// handleExits routes every exit the reaper sees to its process.
func (s *Service) handleExits(ctx context.Context, exits <-chan process.Exit) {
	for e := range exits {
		s.mu.Lock()
		pr, ok := s.byPid[e.Pid]
		if ok {
			delete(s.byPid, e.Pid)
		} else if s.spawning > 0 {
			s.early[e.Pid] = e
		}
		s.mu.Unlock()
		if ok {
			go s.handleExit(ctx, pr, e)
		}
	}
}

// handleExit finishes a process: for an init sharing the host's pid
// namespace it kills what is left of the container; it drains the output,
// publishes TaskExit and only then marks the process stopped, so Wait and
// Delete see an exit whose output and event are complete.
func (s *Service) handleExit(ctx context.Context, pr *proc, e process.Exit) {
	if pr.execID == "" && !pr.c.linux.PrivatePidNamespace() {
		_ = pr.c.linux.KillAll()
	}
	if io := pr.getIO(); io != nil {
		drainCtx, cancel := context.WithTimeout(ctx, ioDrainGrace)
		_ = io.Wait(drainCtx)
		cancel()
	}

	pr.lifecycle.Lock()
	defer pr.lifecycle.Unlock()
	s.cfg.Publisher.Publish(ctx, pr.c.namespace, topicExit, &eventstypes.TaskExit{
		ContainerID: pr.c.id,
		ID:          pr.id(),
		Pid:         uint32(e.Pid),
		ExitStatus:  uint32(e.Status),
		ExitedAt:    timestamppb.New(e.Timestamp),
	})
	pr.p.SetExited(e.Status, e.Timestamp)
}

// Delete removes a stopped container (or a created one, which it kills), or
// an exec that stopped or never started.
func (s *Service) Delete(ctx context.Context, r *taskv3.DeleteRequest) (*taskv3.DeleteResponse, error) {
	pr, err := s.getProc(ctx, r.ID, r.ExecID)
	if err != nil {
		return nil, toGRPC(err)
	}
	if pr.execID != "" {
		return s.deleteExec(pr)
	}
	c := pr.c
	if c.init.p.Status() == process.Created && c.init.p.Pid() > 0 {
		// containerd deletes a task it created but could not start; runc-v2
		// kills such an init, and so do we. One still to be restored from
		// a checkpoint (pid 0) has no process to wait for.
		if err := c.init.p.Kill(syscall.SIGKILL, false); err != nil && !errdefs.IsNotFound(err) {
			return nil, toGRPC(err)
		}
		if err := c.init.p.Wait(ctx); err != nil {
			return nil, toGRPC(err)
		}
	}
	if err := c.init.p.Delete(); err != nil {
		return nil, toGRPC(err)
	}
	steptime.Mark(ctx, "process")
	close(c.stopOOM)
	var errs error
	if err := c.linux.Destroy(ctx); err != nil {
		errs = fmt.Errorf("delete container %s: %w", c.id, err)
	}
	if io := c.init.getIO(); io != nil {
		io.Close()
	}
	c.mu.Lock()
	for _, ex := range c.execs {
		if io := ex.getIO(); io != nil {
			io.Close()
		}
	}
	c.mu.Unlock()
	s.mu.Lock()
	delete(s.containers, containerKey(c.namespace, c.id))
	s.mu.Unlock()
	steptime.Mark(ctx, "io")

	pid := c.init.p.Pid()
	status, at := c.init.p.ExitStatus()
	s.cfg.Publisher.Publish(ctx, c.namespace, topicDelete, &eventstypes.TaskDelete{
		ContainerID: c.id,
		ID:          c.id,
		Pid:         uint32(pid),
		ExitStatus:  uint32(status),
		ExitedAt:    timestamppb.New(at),
	})
	if errs != nil {
		return nil, toGRPC(errs)
	}
	return &taskv3.DeleteResponse{Pid: uint32(pid), ExitStatus: uint32(status), ExitedAt: timestamppb.New(at)}, nil
}

func (s *Service) deleteExec(pr *proc) (*taskv3.DeleteResponse, error) {
	if err := pr.p.Delete(); err != nil {
		return nil, toGRPC(err)
	}
	if io := pr.getIO(); io != nil {
		io.Close()
	}
	pr.c.mu.Lock()
	delete(pr.c.execs, pr.execID)
	pr.c.mu.Unlock()
	status, at := pr.p.ExitStatus()
	resp := &taskv3.DeleteResponse{Pid: uint32(pr.p.Pid()), ExitStatus: uint32(status)}
	if !at.IsZero() {
		resp.ExitedAt = timestamppb.New(at)
	}
	return resp, nil
}

// Kill signals init or an exec; with all, every process of the container.
func (s *Service) Kill(ctx context.Context, r *taskv3.KillRequest) (*emptypb.Empty, error) {
	pr, err := s.getProc(ctx, r.ID, r.ExecID)
	if err != nil {
		return nil, toGRPC(err)
	}
	if r.Signal == 0 || r.Signal > 64 {
		return nil, toGRPC(fmt.Errorf("kill %s: signal %d is out of range: %w", pr.id(), r.Signal, errdefs.ErrInvalidArgument))
	}
	if err := pr.p.Kill(syscall.Signal(r.Signal), r.All); err != nil {
		return nil, toGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

// State reports init or an exec.
func (s *Service) State(ctx context.Context, r *taskv3.StateRequest) (*taskv3.StateResponse, error) {
	pr, err := s.getProc(ctx, r.ID, r.ExecID)
	if err != nil {
		return nil, toGRPC(err)
	}
	status, at := pr.p.ExitStatus()
	resp := &taskv3.StateResponse{
		ID:         pr.id(),
		Bundle:     pr.c.bundle,
		Pid:        uint32(pr.p.Pid()),
		Status:     statusOf(pr.p.Status()),
		Stdin:      pr.stdio.Stdin,
		Stdout:     pr.stdio.Stdout,
		Stderr:     pr.stdio.Stderr,
		Terminal:   pr.stdio.Terminal,
		ExitStatus: uint32(status),
		ExecID:     pr.execID,
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
	case process.Paused:
		return tasktypes.Status_PAUSED
	case process.Stopped, process.Deleted:
		return tasktypes.Status_STOPPED
	}
	return tasktypes.Status_UNKNOWN
}

// Wait blocks until the process exited, its output drained and TaskExit
// was sent.
func (s *Service) Wait(ctx context.Context, r *taskv3.WaitRequest) (*taskv3.WaitResponse, error) {
	pr, err := s.getProc(ctx, r.ID, r.ExecID)
	if err != nil {
		return nil, toGRPC(err)
	}
	if err := pr.p.Wait(ctx); err != nil {
		return nil, toGRPC(err)
	}
	status, at := pr.p.ExitStatus()
	return &taskv3.WaitResponse{ExitStatus: uint32(status), ExitedAt: timestamppb.New(at)}, nil
}

// Pids lists the processes of the container, naming exec processes.
func (s *Service) Pids(ctx context.Context, r *taskv3.PidsRequest) (*taskv3.PidsResponse, error) {
	c, err := s.get(ctx, r.ID)
	if err != nil {
		return nil, toGRPC(err)
	}
	pids, err := c.linux.Pids()
	if err != nil {
		return nil, toGRPC(err)
	}
	execByPid := map[int]string{}
	c.mu.Lock()
	for id, ex := range c.execs {
		if pid := ex.p.Pid(); pid > 0 {
			execByPid[pid] = id
		}
	}
	c.mu.Unlock()
	resp := &taskv3.PidsResponse{}
	for _, pid := range pids {
		info := &tasktypes.ProcessInfo{Pid: uint32(pid)}
		if id, ok := execByPid[pid]; ok {
			info.Info = processDetails(id)
		}
		resp.Processes = append(resp.Processes, info)
	}
	return resp, nil
}

// CloseIO closes the stdin of init or an exec.
func (s *Service) CloseIO(ctx context.Context, r *taskv3.CloseIORequest) (*emptypb.Empty, error) {
	pr, err := s.getProc(ctx, r.ID, r.ExecID)
	if err != nil {
		return nil, toGRPC(err)
	}
	if r.Stdin {
		if io := pr.getIO(); io != nil {
			if err := io.CloseStdin(); err != nil {
				return nil, toGRPC(err)
			}
		}
	}
	return &emptypb.Empty{}, nil
}

// ResizePty sets the window size of a terminal process.
func (s *Service) ResizePty(ctx context.Context, r *taskv3.ResizePtyRequest) (*emptypb.Empty, error) {
	pr, err := s.getProc(ctx, r.ID, r.ExecID)
	if err != nil {
		return nil, toGRPC(err)
	}
	if err := pr.resize(r.Width, r.Height); err != nil {
		return nil, toGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

// Connect tells containerd the shim's and the task's pids.
func (s *Service) Connect(ctx context.Context, r *taskv3.ConnectRequest) (*taskv3.ConnectResponse, error) {
	resp := &taskv3.ConnectResponse{ShimPid: uint32(s.cfg.ShimPid), Version: "containerd-shim-mini-v2"}
	if c, err := s.get(ctx, r.ID); err == nil {
		resp.TaskPid = uint32(c.init.p.Pid())
	}
	return resp, nil
}

// Shutdown ends the shim once no container is left.
func (s *Service) Shutdown(ctx context.Context, r *taskv3.ShutdownRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	left := len(s.containers)
	if left == 0 {
		s.shuttingDown = true
	}
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

// Checkpoint dumps a running or paused container with CRIU into the
// request's path, with runc's checkpoint options, and publishes
// TaskCheckpointed. With the options' Exit the container ends as the dump
// does, and its exit is reported as any; a paused one stays paused.
func (s *Service) Checkpoint(ctx context.Context, r *taskv3.CheckpointTaskRequest) (*emptypb.Empty, error) {
	if err := s.checkpoint(ctx, r); err != nil {
		return nil, toGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *Service) checkpoint(ctx context.Context, r *taskv3.CheckpointTaskRequest) error {
	pr, err := s.getProc(ctx, r.ID, "")
	if err != nil {
		return err
	}
	o, err := runtimeopts.DecodeCheckpoint(r.Options)
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", r.ID, err)
	}
	// Its exit handler waits while the dump runs: an Exit dump's exit is
	// handled once the checkpoint is complete.
	pr.lifecycle.Lock()
	defer pr.lifecycle.Unlock()
	if st := pr.p.Status(); st != process.Running && st != process.Paused {
		return fmt.Errorf("checkpoint %s: the container is %s; only a running or paused one can be checkpointed: %w", r.ID, st, errdefs.ErrFailedPrecondition)
	}
	err = s.runtime.Checkpoint(ctx, pr.c.linux, linux.CheckpointOpts{
		ImagePath: r.Path, CopyTo: o.ImagePath, WorkPath: o.WorkPath, ParentPath: o.ParentPath,
		Exit: o.Exit, OpenTCP: o.OpenTcp, ExternalUnixSockets: o.ExternalUnixSockets,
		Terminal: o.Terminal, FileLocks: o.FileLocks, EmptyNamespaces: o.EmptyNamespaces, CgroupsMode: o.CgroupsMode,
	})
	if err != nil {
		return err
	}
	s.cfg.Publisher.Publish(ctx, pr.c.namespace, topicCheckpointed, &eventstypes.TaskCheckpointed{ContainerID: r.ID, Checkpoint: r.Path})
	return nil
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
