package linux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// StartFunc starts cmd and reports its exit status on the returned channel,
// which must have room for it. The shim's reaper provides it: the reaper
// reaps every child, so nothing here may call cmd.Wait.
type StartFunc func(cmd *exec.Cmd) (<-chan int, error)

// Runtime creates containers. A shim daemon has one.
type Runtime struct {
	start StartFunc

	selfOnce sync.Once
	self     *os.File
	selfErr  error
}

// NewRuntime returns a Runtime that starts processes with start.
func NewRuntime(start StartFunc) *Runtime {
	return &Runtime{start: start}
}

// binaryPath is what a container's first process is started from. A
// process that other container processes can see before it execve()s (exec,
// or init in a shared or joined pid namespace) starts from the sealed copy,
// so /proc/PID/exe never leads to the shim binary on the host. An init that
// gets a pid namespace of its own is invisible to every container process
// until it has execve()d the user's program, so it starts from the binary
// itself and skips the copy (~9 ms for a 20 MB binary).
func (r *Runtime) binaryPath(ownPidNamespace bool) (string, error) {
	if ownPidNamespace {
		return "/proc/self/exe", nil
	}
	r.selfOnce.Do(func() { r.self, r.selfErr = sealedSelf() })
	if r.selfErr != nil {
		return "", r.selfErr
	}
	return "/proc/self/fd/" + strconv.Itoa(int(r.self.Fd())), nil
}

// CreateOpts is one container to create.
type CreateOpts struct {
	ID     string
	Bundle string
	// Spec is the bundle's config.json, from LoadSpec.
	Spec *specs.Spec
	// Rootfs are the mounts containerd sent; when empty the spec's root
	// path is used as it is (ctr run --rootfs).
	Rootfs []Mount
	// Stdin, Stdout and Stderr become init's fds 0, 1 and 2.
	Stdin, Stdout, Stderr *os.File
}

// Container is a created container whose init waits for Start.
type Container struct {
	ID     string
	Bundle string
	Spec   *specs.Spec
	// InitPid is init's pid in the shim's pid namespace.
	InitPid int

	cg          Cgroup
	rootfsMount string
	privatePid  bool
	conn        *net.UnixConn
}

// Create sets up the container up to the point where only execve() of the
// user's process is left. On error nothing is left behind.
func (r *Runtime) Create(ctx context.Context, opts CreateOpts) (_ *Container, retErr error) {
	spec := opts.Spec
	ns, err := namespacesOf(spec)
	if err != nil {
		return nil, err
	}
	cgPath, err := cgroupPathOf(spec.Linux.CgroupsPath, opts.ID)
	if err != nil {
		return nil, err
	}
	c := &Container{
		ID:         opts.ID,
		Bundle:     opts.Bundle,
		Spec:       spec,
		privatePid: ns.unshare&unix.CLONE_NEWPID != 0,
	}
	defer func() {
		if retErr != nil {
			if err := c.Destroy(context.WithoutCancel(ctx)); err != nil {
				retErr = fmt.Errorf("%w (and cleaning up failed: %v)", retErr, err)
			}
		}
	}()

	rootfs := RootfsPath(spec, opts.Bundle)
	if len(opts.Rootfs) > 0 {
		if err := os.MkdirAll(rootfs, 0o711); err != nil {
			return nil, fmt.Errorf("create rootfs mount point %s: %w", rootfs, err)
		}
		// Record the mount before making it, so a crash in between is
		// cleaned up too (unmounting what is not mounted is harmless).
		c.rootfsMount = rootfs
		if err := writeState(opts.Bundle, c.diskState()); err != nil {
			return nil, err
		}
		if err := MountRootfs(opts.Rootfs, rootfs); err != nil {
			return nil, err
		}
	}
	if fi, err := os.Stat(rootfs); err != nil {
		return nil, fmt.Errorf("rootfs %s: %w", rootfs, asNotFound(err))
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("rootfs %s is not a directory: %w", rootfs, errdefs.ErrInvalidArgument)
	}

	c.cg, err = NewCgroup(cgPath)
	if err != nil {
		return nil, err
	}
	if err := writeState(opts.Bundle, c.diskState()); err != nil {
		return nil, err
	}

	if err := r.spawnInit(ctx, c, ns, rootfs, opts); err != nil {
		return nil, err
	}
	return c, nil
}

func asNotFound(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
	}
	return err
}

func (c *Container) diskState() diskState {
	st := diskState{ID: c.ID, InitPid: c.InitPid, RootfsMount: c.rootfsMount}
	if c.cg != nil {
		st.Cgroup = c.cg.Path()
	}
	if c.InitPid > 0 {
		st.InitStart, _ = processStartTime(c.InitPid)
	}
	return st
}

// spawnInit runs the handshake of DESIGN.md: start the sealed binary in init
// mode, place it in the cgroup, send the namespace bootstrap, learn the pid
// of the process that became init, send the config and wait for ready.
func (r *Runtime) spawnInit(ctx context.Context, c *Container, ns namespaces, rootfs string, opts CreateOpts) error {
	binary, err := r.binaryPath(c.privatePid)
	if err != nil {
		return err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("init handshake socketpair: %w", err)
	}
	parentFile := os.NewFile(uintptr(fds[0]), "init-sync-parent")
	childFile := os.NewFile(uintptr(fds[1]), "init-sync-child")
	fc, err := net.FileConn(parentFile)
	parentFile.Close()
	if err != nil {
		childFile.Close()
		return fmt.Errorf("init handshake socket: %w", err)
	}
	conn := fc.(*net.UnixConn)
	c.conn = conn
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}

	cmd := &exec.Cmd{
		Path:       binary,
		Args:       []string{"containerd-shim-mini-v2", "init"},
		Env:        []string{"_MINI_SYNC_FD=3", "GOMAXPROCS=1"},
		Dir:        opts.Bundle,
		ExtraFiles: []*os.File{childFile},
	}
	// Assign only real files: a nil *os.File in the io.Reader field would be
	// a non-nil interface. Unset ones get /dev/null from exec.Cmd.
	if opts.Stdin != nil {
		cmd.Stdin = opts.Stdin
	}
	if opts.Stdout != nil {
		cmd.Stdout = opts.Stdout
	}
	if opts.Stderr != nil {
		cmd.Stderr = opts.Stderr
	}
	// On cgroup v2 the process is born in the container's cgroup; on v1 it
	// is moved there before it gets its bootstrap. Either way everything the
	// preamble forks inherits the cgroup, so no code of the container runs
	// outside it.
	cgDir, bornInCgroup, err := c.cg.Dir()
	if err != nil {
		childFile.Close()
		return err
	}
	if bornInCgroup {
		defer cgDir.Close()
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgDir.Fd())}
	}
	exited, err := r.start(cmd)
	if err != nil && bornInCgroup {
		// clone3 with CLONE_INTO_CGROUP needs Linux 5.7; fall back to a move.
		bornInCgroup = false
		cmd.SysProcAttr = nil
		cmd.Process = nil
		exited, err = r.start(cmd)
	}
	childFile.Close()
	if err != nil {
		return fmt.Errorf("start init: %w", err)
	}
	stage0 := cmd.Process.Pid
	// Only the pid is used from here on; release os/exec's pidfd now
	// instead of at GC (the reaper, not Wait, collects the child).
	_ = cmd.Process.Release()
	// A failed step below leaves a process behind that must not outlive
	// Create; killing the pid we spawned covers the preamble stage.
	killStage0 := func() { _ = unix.Kill(stage0, unix.SIGKILL) }
	// A cgroup namespace is rooted where its creator stands, so the
	// preamble may only create one after the move. Without one, init's own
	// pid is moved while it sets up the rootfs: on v1 the first move of a
	// burst waits for an RCU grace period, which this overlaps. Either way
	// the move completes before Create returns, so no user code runs
	// outside the cgroup.
	moveLater := !bornInCgroup && ns.unshare&unix.CLONE_NEWCGROUP == 0
	if !bornInCgroup && !moveLater {
		if err := c.cg.Add(stage0); err != nil {
			killStage0()
			return err
		}
	}
	boot := ns.bootstrap()
	hdr := make([]byte, 4, 4+len(boot))
	hdr[0], hdr[1], hdr[2], hdr[3] = byte(len(boot)), byte(len(boot)>>8), byte(len(boot)>>16), byte(len(boot)>>24)
	if _, err := conn.Write(append(hdr, boot...)); err != nil {
		killStage0()
		return fmt.Errorf("send namespace bootstrap to init: %w", r.deathCause(err, exited))
	}
	pid, err := readPidLine(conn)
	if err != nil {
		killStage0()
		return r.deathCause(err, exited)
	}
	c.InitPid = pid
	if pid != stage0 {
		// The preamble forked into a pid namespace; the first stage exits at
		// once and its exit status says whether it did so cleanly.
		select {
		case status := <-exited:
			if status != 0 {
				_ = unix.Kill(pid, unix.SIGKILL)
				return fmt.Errorf("init preamble exited with status %d", status)
			}
		case <-ctx.Done():
			_ = unix.Kill(pid, unix.SIGKILL)
			killStage0()
			return ctx.Err()
		}
	}
	killInit := func() { _ = unix.Kill(pid, unix.SIGKILL) }
	moved := make(chan error, 1)
	if moveLater {
		go func() { moved <- c.cg.Add(pid) }()
	} else {
		moved <- nil
	}
	if err := writeState(c.Bundle, c.diskState()); err != nil {
		killInit()
		<-moved
		return err
	}

	// Init learns the cgroup the shim chose (also when the spec named none).
	spec := *c.Spec
	lx := *spec.Linux
	lx.CgroupsPath = c.cg.Path()
	spec.Linux = &lx
	cfg := initConfig{Spec: &spec, Rootfs: rootfs, NewUTS: ns.unshare&unix.CLONE_NEWUTS != 0}
	if err := writeFrame(conn, cfg); err != nil {
		killInit()
		return fmt.Errorf("send config to init: %w", err)
	}
	var m message
	readErr := readFrame(conn, &m)
	// A move that failed because init already died says less than init's
	// own report, so the report wins.
	moveErr := <-moved
	if readErr != nil {
		killInit()
		if errors.Is(readErr, io.EOF) {
			if moveErr != nil {
				return moveErr
			}
			return errors.New("container init exited during setup without a reason")
		}
		return fmt.Errorf("wait for container init: %w", readErr)
	}
	switch m.Type {
	case msgReady:
		if moveErr != nil {
			killInit()
			return moveErr
		}
		_ = conn.SetDeadline(time.Time{})
		return nil
	case msgError:
		killInit()
		return errorFromMessage(m)
	default:
		killInit()
		return fmt.Errorf("%w %q from init", errUnexpectedMessage, m.Type)
	}
}

// deathCause explains a broken handshake with the stage-0 exit status when
// the preamble already died.
func (r *Runtime) deathCause(err error, exited <-chan int) error {
	select {
	case status := <-exited:
		return fmt.Errorf("container init exited with status %d before the handshake: %w", status, err)
	case <-time.After(100 * time.Millisecond):
		return err
	}
}

func readPidLine(conn io.Reader) (int, error) {
	var line []byte
	b := make([]byte, 1)
	for len(line) < 1024 {
		n, err := conn.Read(b)
		if n == 1 {
			if b[0] == '\n' {
				break
			}
			line = append(line, b[0])
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) && len(line) == 0 {
				return 0, errors.New("container init exited before reporting its pid")
			}
			return 0, fmt.Errorf("read init pid: %w", err)
		}
	}
	s := string(line)
	if msg, ok := strings.CutPrefix(s, "error "); ok {
		return 0, errors.New(msg)
	}
	v, ok := strings.CutPrefix(s, "pid ")
	if !ok {
		return 0, fmt.Errorf("unexpected line from init preamble: %q", s)
	}
	pid, err := strconv.Atoi(v)
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("bad pid from init preamble: %q", v)
	}
	return pid, nil
}

// Start lets init execve() the user's process. It returns once the execve
// succeeded (init's end of the socket closed on exec) or init reported why
// it failed.
func (c *Container) Start(ctx context.Context) error {
	if c.conn == nil {
		return fmt.Errorf("container %s: init is not waiting for start: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	conn := c.conn
	c.conn = nil
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if err := writeFrame(conn, message{Type: msgStart}); err != nil {
		return fmt.Errorf("release container init: %w", err)
	}
	var m message
	err := readFrame(conn, &m)
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("start container init: %w", err)
	}
	if m.Type == msgError {
		return errorFromMessage(m)
	}
	return fmt.Errorf("%w %q from init at start", errUnexpectedMessage, m.Type)
}

// Signal sends sig to init, or with all to every process of the container.
func (c *Container) Signal(sig unix.Signal, all bool) error {
	if all && c.cg != nil {
		return signalCgroup(c.cg, sig)
	}
	if err := unix.Kill(c.InitPid, sig); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("process %d already finished: %w", c.InitPid, errdefs.ErrNotFound)
		}
		return fmt.Errorf("signal %d to init %d: %w", sig, c.InitPid, err)
	}
	return nil
}

// PrivatePidNamespace says whether init is pid 1 of its own namespace; if
// not, its exit does not end the rest of the container's processes.
func (c *Container) PrivatePidNamespace() bool { return c.privatePid }

// Pids lists the processes in the container's cgroup.
func (c *Container) Pids() ([]int, error) {
	if c.cg == nil {
		return nil, nil
	}
	return c.cg.Pids()
}

// KillAll kills every process left in the container's cgroup.
func (c *Container) KillAll() error {
	if c.cg == nil {
		return nil
	}
	return killCgroup(c.cg, 5*time.Second)
}

// Destroy undoes Create: kills what is left, removes the cgroup, unmounts
// the rootfs it mounted and removes its state. Safe to call more than once.
func (c *Container) Destroy(ctx context.Context) error {
	var errs []error
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
	if c.cg != nil {
		if err := killCgroup(c.cg, 5*time.Second); err != nil {
			errs = append(errs, err)
		} else if err := deleteCgroupRetry(c.cg); err != nil {
			errs = append(errs, err)
		} else {
			c.cg = nil
		}
	}
	if c.rootfsMount != "" {
		if err := UnmountRootfs(c.rootfsMount); err != nil {
			errs = append(errs, err)
		} else {
			c.rootfsMount = ""
		}
	}
	if len(errs) == 0 {
		if err := removeState(c.Bundle); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// deleteCgroupRetry retries for a moment: a killed process leaves its
// cgroup only once the kernel has fully torn it down.
func deleteCgroupRetry(cg Cgroup) error {
	var err error
	for i := 0; i < 100; i++ {
		if err = cg.Delete(); err == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return err
}

// Cleanup undoes what a container of bundle left behind when its shim died:
// it kills init and everything in its cgroup, removes the cgroup, unmounts
// the rootfs and removes the state file. It returns init's pid (0 if none
// was recorded).
func Cleanup(ctx context.Context, bundle string) (int, error) {
	st, err := readState(bundle)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if st.InitPid > 0 {
		if start, err := processStartTime(st.InitPid); err == nil && start == st.InitStart {
			_ = unix.Kill(st.InitPid, unix.SIGKILL)
		}
	}
	c := &Container{ID: st.ID, Bundle: bundle, rootfsMount: st.RootfsMount, InitPid: st.InitPid}
	if st.Cgroup != "" {
		cg, err := LoadCgroup(st.Cgroup)
		if err == nil {
			c.cg = cg
		} else if !errdefs.IsNotFound(err) {
			return st.InitPid, err
		}
	}
	return st.InitPid, c.Destroy(ctx)
}
