package linux

import (
	"bytes"
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
	"golang.org/x/sys/unix"

	"github.com/minishim/containerd-shim-mini-v2/linux/initproc"
	"github.com/minishim/containerd-shim-mini-v2/nsexec"
	"github.com/minishim/containerd-shim-mini-v2/steptime"
)

// spawnRequest is one container process to bring up to the point where only
// its execve() is left: init (new namespaces) or an exec (joined ones).
type spawnRequest struct {
	what   string // "container init" or "exec ID": names the process in errors
	binary containerBinaryFile
	dir    string
	ns     namespaces
	cg     Cgroup
	config initproc.Config
	// Stdio for fds 0-2; nil ones get /dev/null.
	stdin, stdout, stderr *os.File
	// recordPid runs once the final pid is known, while the process waits
	// for its config (Create reads what it keeps of the process);
	// saveState runs once the config went out, while the process sets
	// itself up (Create writes its state file).
	recordPid func(pid int) error
	saveState func() error
	// seccompListener hands the notify fd the process got from its
	// seccomp filter (fd is its number in process pid) to the profile's
	// listener; set when the container's profile has one.
	seccompListener func(pid, fd int) error
	// hooks runs the prestart and createRuntime hooks when init asks.
	hooks func() error
	// initialAffinity is an exec's execCPUAffinity.initial, set on the
	// process as it starts (its final one travels in the config).
	initialAffinity *unix.CPUSet
	// oomScoreAdj is the process's, set on it as it starts.
	oomScoreAdj *int
	// mountFds are detached idmapped mounts sent after the config, for
	// the spec mounts config.IDMappedMounts names.
	mountFds []int
	// mountSource clones a spec mount's bind source when init asks.
	mountSource func(index int) (int, error)
}

// preambleEnv is the environment that makes the binary's preamble act:
// where its end of the handshake socket is (fd 3), and the protocol's
// number, which it checks against its own.
func preambleEnv() []string {
	return []string{"_MINI_SYNC_FD=3", "_MINI_HANDSHAKE=" + strconv.Itoa(initproc.Handshake)}
}

// Process is a container process waiting to execve() its program.
type Process struct {
	Pid int
	// Console is the pty master when the process asked for a terminal; the
	// caller owns it.
	Console *os.File

	conn *net.UnixConn
	in   *fdReader
}

// spawn runs the handshake of DESIGN.md: start the binary in init mode,
// place it in the cgroup, send the namespace bootstrap, learn the pid of the
// process the preamble left running, send the config, and wait for ready.
// On error no process is left behind.
func (r *Runtime) spawn(ctx context.Context, req spawnRequest) (_ *Process, retErr error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: handshake socketpair: %w", req.what, err)
	}
	parentFile := os.NewFile(uintptr(fds[0]), "sync-parent")
	childFile := os.NewFile(uintptr(fds[1]), "sync-child")
	fc, err := net.FileConn(parentFile)
	parentFile.Close()
	if err != nil {
		childFile.Close()
		return nil, fmt.Errorf("%s: handshake socket: %w", req.what, err)
	}
	conn := fc.(*net.UnixConn)
	p := &Process{conn: conn, in: &fdReader{conn: conn}}
	defer func() {
		if retErr != nil {
			p.Abandon()
		}
	}()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}

	newCmd := func() *exec.Cmd {
		cmd := &exec.Cmd{
			Path:       req.binary.path(),
			Args:       []string{req.binary.name, "init"}, // the preamble names itself so
			Env:        append(preambleEnv(), "GOMAXPROCS=1"),
			Dir:        req.dir,
			ExtraFiles: []*os.File{childFile},
		}
		// Assign only real files: a nil *os.File in the io.Reader field
		// would be a non-nil interface. Unset ones get /dev/null.
		if req.stdin != nil {
			cmd.Stdin = req.stdin
		}
		if req.stdout != nil {
			cmd.Stdout = req.stdout
		}
		if req.stderr != nil {
			cmd.Stderr = req.stderr
		}
		return cmd
	}
	// execCPUAffinity.initial holds until the process is in its cgroup
	// (a cpuset's takes over then): a preamble moving itself first thing
	// would cut it short, so such an exec is moved by the shim.
	cmd, exited, bornInCgroup, selfLines, err := r.startIn(newCmd, req.cg, req.initialAffinity == nil)
	childFile.Close()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", req.what, err)
	}
	steptime.Mark(ctx, "fork+exec")
	stage0 := cmd.Process.Pid
	// Only the pid is used from here on; release os/exec's pidfd now
	// instead of at GC (the reaper, not Wait, collects the child).
	_ = cmd.Process.Release()
	p.Pid = stage0
	// Before the preamble may enter a user namespace of its own, where it
	// could only raise it; what it forks inherits it.
	if err := initproc.ApplyOOMScoreAdj(stage0, req.oomScoreAdj); err != nil {
		return nil, fmt.Errorf("%s: %w", req.what, err)
	}
	if req.initialAffinity != nil {
		// The preamble is single-threaded, waiting for the bootstrap:
		// what it forks, and the Go runtime's threads, inherit it.
		if err := unix.SchedSetaffinity(stage0, req.initialAffinity); err != nil {
			return nil, fmt.Errorf("%s: process.execCPUAffinity.initial: %w", req.what, err)
		}
	}

	// A cgroup namespace is rooted where its creator stands, so a preamble
	// that creates one must be moved first. Otherwise the final process is
	// moved while it sets itself up: on v1 the first move of a burst waits
	// for an RCU grace period, which this overlaps. Either way the move is
	// done before the process may execve(), so no user code runs outside
	// the cgroup.
	moveLater := !bornInCgroup && req.ns.unshare&unix.CLONE_NEWCGROUP == 0
	if !bornInCgroup && !moveLater {
		if err := req.cg.Add(stage0); err != nil {
			return nil, err
		}
	}
	// Most execs are set up by the preamble in C from a plan of their
	// config (nsexec/plan.go), with no Go runtime starting in them; init
	// and the other execs by initproc, in Go, from the config itself.
	var plan []byte
	if req.config.Exec {
		plan, _ = nsexec.ProcessPlan(&req.config, r.lastCap())
	}
	boot := append(req.ns.bootstrap(), selfLines...)
	if plan != nil {
		boot = append(boot, "process\n"...)
	}
	if err := writeBootstrap(conn, boot); err != nil {
		return nil, fmt.Errorf("send namespace bootstrap to %s: %w", req.what, deathCause(err, exited))
	}
	line, err := readPreambleLine(conn)
	if err == nil && line == "usermap" {
		// The preamble made the user namespace and waits for its ids.
		if err := writeIDMaps(stage0, req.ns.uidMap, req.ns.gidMap); err != nil {
			return nil, fmt.Errorf("%s: %w", req.what, err)
		}
		if _, err := conn.Write([]byte{'1'}); err != nil {
			return nil, fmt.Errorf("%s: %w", req.what, deathCause(err, exited))
		}
		line, err = readPreambleLine(conn)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", req.what, deathCause(err, exited))
	}
	pid, err := parsePidLine(line)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", req.what, err)
	}
	steptime.Mark(ctx, "preamble")
	p.Pid = pid
	moved := make(chan error, 1)
	switch {
	case !moveLater:
		moved <- nil
	case req.cg.Ready():
		go func() { moved <- req.cg.Add(pid) }()
	default:
		// Init bind-mounts the cgroup's directories while it sets up, so
		// a cgroup that appears only with its first process (a systemd
		// unit) must be there before the config goes out.
		if err := req.cg.Add(pid); err != nil {
			return nil, err
		}
		moved <- nil
	}
	var moveOnce sync.Once
	var moveErr error
	awaitMove := func() error {
		moveOnce.Do(func() { moveErr = <-moved })
		return moveErr
	}
	// On every way out, before an abandoned process is killed (defers run
	// last first): no move is left in flight.
	defer func() { _ = awaitMove() }()
	// While the process waits for its config, so it is there to be read.
	if req.recordPid != nil {
		if err := req.recordPid(pid); err != nil {
			return nil, err
		}
	}
	if plan != nil {
		err = writeBootstrap(conn, plan)
	} else {
		req.config.Steps = steptime.Active(ctx)
		err = initproc.WriteFrame(conn, req.config)
	}
	if err != nil {
		return nil, fmt.Errorf("send config to %s: %w", req.what, err)
	}
	if len(req.mountFds) > 0 {
		if err := sendMountFds(conn, req.mountFds); err != nil {
			return nil, fmt.Errorf("%s: %w", req.what, err)
		}
	}
	steptime.Mark(ctx, "config")
	// What is left of ours runs while the process sets itself up.
	if pid != stage0 {
		// The preamble forked into a pid namespace; the first stage exits at
		// once and its status says whether it did so cleanly.
		select {
		case status := <-exited:
			if status != 0 {
				// Reaped already: its pid is no longer ours to signal.
				return nil, fmt.Errorf("%s: preamble exited with status %d", req.what, status)
			}
		case <-ctx.Done():
			_ = unix.Kill(stage0, unix.SIGKILL)
			return nil, ctx.Err()
		}
	}
	if req.saveState != nil {
		if err := req.saveState(); err != nil {
			return nil, err
		}
		steptime.Mark(ctx, "state")
	}
	var runHooks func() error
	if req.hooks != nil {
		runHooks = func() error {
			// Hooks find the container's cgroup from its pid.
			if err := awaitMove(); err != nil {
				return err
			}
			return req.hooks()
		}
	}
	m, err := p.awaitReady(setupSteps{hooks: runHooks, seccompListener: req.seccompListener, mountSource: req.mountSource})
	steptime.Mark(ctx, "setup")
	steptime.Detail(ctx, "setup", m.Steps)
	// A move that failed because the process already died says less than
	// the process's own report, so the report wins.
	_ = awaitMove()
	steptime.Mark(ctx, "cgroup-move")
	if err != nil {
		if errors.Is(err, io.EOF) {
			if moveErr != nil {
				return nil, moveErr
			}
			return nil, fmt.Errorf("%s exited during setup without a reason", req.what)
		}
		var step *stepError
		if errors.As(err, &step) {
			return nil, step.err
		}
		return nil, fmt.Errorf("wait for %s: %w", req.what, err)
	}
	switch m.Type {
	case initproc.MsgReady:
		if moveErr != nil {
			return nil, moveErr
		}
		_ = conn.SetDeadline(time.Time{})
		return p, nil
	case initproc.MsgError:
		return nil, initproc.ErrorFromMessage(m)
	default:
		return nil, fmt.Errorf("%w %q from %s", initproc.ErrUnexpectedMessage, m.Type, req.what)
	}
}

// startIn starts a process from newCmd so that it is born in cg where it
// can be: cloned into it (CLONE_INTO_CGROUP) on v2, or on v1, with
// selfMove, placing itself (cgroup_self_linux.go; selfLines are the
// preamble's bootstrap lines for it, and a hybrid host's unified cgroup
// is cloned into). Elsewhere, or when the kernel refuses the clone into a
// cgroup (before Linux 5.7), bornInCgroup is false and the process must be
// moved. A failed Start spends an exec.Cmd, so each try takes a new one.
func (r *Runtime) startIn(newCmd func() *exec.Cmd, cg Cgroup, selfMove bool) (_ *exec.Cmd, _ <-chan int, bornInCgroup bool, selfLines []byte, _ error) {
	startPlain := func() (*exec.Cmd, <-chan int, bool, []byte, error) {
		cmd := newCmd()
		exited, err := r.start(cmd)
		return cmd, exited, false, nil, err
	}
	var cgDir *os.File
	if v1, ok := cg.(*cgroupV1); ok {
		if !selfMove || !r.selfMoveLockFree {
			return startPlain()
		}
		sp := v1.selfPlacement()
		selfLines = sp.bootstrap()
		if sp.unified != "" {
			f, err := os.Open(sp.unified)
			if err != nil {
				return nil, nil, false, nil, fmt.Errorf("open unified cgroup %s: %w", sp.unified, err)
			}
			cgDir = f
		}
	} else {
		f, ok, err := cg.Dir()
		if err != nil {
			return nil, nil, false, nil, err
		}
		if !ok {
			return startPlain()
		}
		cgDir = f
	}
	cmd := newCmd()
	if cgDir != nil {
		defer cgDir.Close()
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgDir.Fd())}
	}
	exited, err := r.start(cmd)
	if err != nil && cgDir != nil {
		// clone3 with CLONE_INTO_CGROUP needs Linux 5.7; fall back to a move.
		return startPlain()
	}
	return cmd, exited, true, selfLines, err
}

// readPreambleLine reads one line the C preamble wrote; an error line
// becomes the error.
func readPreambleLine(conn io.Reader) (string, error) {
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
				return "", errors.New("container init exited before reporting its pid")
			}
			return "", fmt.Errorf("read from the preamble: %w", err)
		}
	}
	s := string(line)
	if msg, ok := strings.CutPrefix(s, "error "); ok {
		return "", errors.New(msg)
	}
	return s, nil
}

// parsePidLine reads the preamble's "pid N" line.
func parsePidLine(s string) (int, error) {
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

// setupSteps are what the parent does for a process during its setup,
// when it asks; nil ones it has none of.
type setupSteps struct {
	// hooks runs the prestart and createRuntime hooks.
	hooks func() error
	// seccompListener hands a seccomp notify fd to the listener.
	seccompListener func(pid, fd int) error
	// mountSource clones a spec mount's bind source.
	mountSource func(index int) (int, error)
}

// awaitReady reads until ready or error, taking the pty master and doing
// the steps the process asks for on the way.
func (p *Process) awaitReady(steps setupSteps) (initproc.Message, error) {
	for {
		var m initproc.Message
		if err := initproc.ReadFrame(p.in, &m); err != nil {
			return m, err
		}
		switch m.Type {
		case initproc.MsgConsole:
			fd, ok := p.in.takeFd()
			if !ok {
				return m, errors.New("console message came without the pty master")
			}
			p.Console = os.NewFile(uintptr(fd), "pty-master")
		case initproc.MsgSeccomp:
			if err := p.serveSeccomp(steps.seccompListener, m); err != nil {
				return m, &stepError{err}
			}
		case initproc.MsgHooks:
			err := errors.New("init asked for hooks the spawn has none of")
			if steps.hooks != nil {
				err = steps.hooks()
			}
			if err != nil {
				_ = initproc.WriteFrame(p.conn, initproc.ErrorMessage(err))
				return m, &stepError{err}
			}
			if err := initproc.WriteFrame(p.conn, initproc.Message{Type: initproc.MsgHooksDone}); err != nil {
				return m, err
			}
		case initproc.MsgMountSource:
			if err := p.serveMountSource(steps.mountSource, m.Index); err != nil {
				return m, &stepError{err}
			}
		default:
			return m, nil
		}
	}
}

// serveMountSource sends the process a clone of spec mount index's source.
func (p *Process) serveMountSource(clone func(index int) (int, error), index int) error {
	err := errors.New("the process asked for a mount source, which only a container's init may")
	fd := -1
	if clone != nil {
		fd, err = clone(index)
	}
	if err != nil {
		_ = initproc.WriteFrame(p.conn, initproc.ErrorMessage(err))
		return err
	}
	defer unix.Close(fd)
	var frame bytes.Buffer
	if err := initproc.WriteFrame(&frame, initproc.Message{Type: initproc.MsgMountSourceDone}); err != nil {
		return err
	}
	_, _, err = p.conn.WriteMsgUnix(frame.Bytes(), unix.UnixRights(fd), nil)
	return err
}

// stepError is a step the parent did for the process during setup (its
// hooks, its seccomp listener) that failed: it names itself, so it is
// passed on as it is.
type stepError struct{ err error }

func (e *stepError) Error() string { return e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

// serveSeccomp hands the process's seccomp notify fd to listener and
// tells the process how that went.
func (p *Process) serveSeccomp(listener func(pid, fd int) error, m initproc.Message) error {
	err := errors.New("the process has a seccomp listener fd but the container's profile no listener")
	if listener != nil {
		err = listener(p.Pid, m.Fd)
	}
	if err != nil {
		_ = initproc.WriteFrame(p.conn, initproc.ErrorMessage(err))
		return err
	}
	return initproc.WriteFrame(p.conn, initproc.Message{Type: initproc.MsgSeccompDone})
}

func writeBootstrap(w io.Writer, boot []byte) error {
	n := len(boot)
	frame := append([]byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)}, boot...)
	_, err := w.Write(frame)
	return err
}

// deathCause explains a broken handshake with the first stage's exit status
// when the preamble already died.
func deathCause(err error, exited <-chan int) error {
	select {
	case status := <-exited:
		return fmt.Errorf("exited with status %d before the handshake: %w", status, err)
	case <-time.After(100 * time.Millisecond):
		return err
	}
}

// Start lets the process execve() its program. It returns once execve
// succeeded (the process's end of the socket closed on exec) or the
// process reported why it failed.
func (p *Process) Start(ctx context.Context) error {
	if p.conn == nil {
		return fmt.Errorf("process %d is not waiting for start: %w", p.Pid, errdefs.ErrFailedPrecondition)
	}
	conn := p.conn
	p.conn = nil
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if err := initproc.WriteFrame(conn, initproc.Message{Type: initproc.MsgStart}); err != nil {
		return fmt.Errorf("release process %d: %w", p.Pid, err)
	}
	var m initproc.Message
	err := initproc.ReadFrame(p.in, &m)
	switch {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		return fmt.Errorf("start process %d: %w", p.Pid, err)
	case m.Type == initproc.MsgError:
		return initproc.ErrorFromMessage(m)
	}
	return fmt.Errorf("%w %q at start", initproc.ErrUnexpectedMessage, m.Type)
}

// Signal sends sig to the process.
func (p *Process) Signal(sig unix.Signal) error { return signalPid(p.Pid, sig) }

// Abandon kills a process that will not be started and releases its
// handshake socket and console.
func (p *Process) Abandon() {
	if p.Pid > 0 {
		// Waited for, so that what the caller reports next (a failed
		// exec, then `ps`) no longer finds it in the container.
		if unix.Kill(p.Pid, unix.SIGKILL) == nil {
			waitGone(p.Pid, time.Second)
		}
	}
	if p.conn != nil {
		p.conn.Close()
		p.conn = nil
	}
	if p.Console != nil {
		p.Console.Close()
		p.Console = nil
	}
	p.in.closeFds()
}

// fdReader reads a unix socket and keeps the file descriptors that arrive
// with the bytes (SCM_RIGHTS), so frames and fds can travel together.
type fdReader struct {
	conn *net.UnixConn
	fds  []int
}

func (r *fdReader) Read(b []byte) (int, error) {
	raw, err := r.conn.SyscallConn()
	if err != nil {
		return 0, err
	}
	oob := make([]byte, unix.CmsgSpace(4*4))
	var n, oobn int
	var rerr error
	// MSG_CMSG_CLOEXEC: a received fd must not leak into a child spawned
	// concurrently, before we could mark it.
	err = raw.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), b, oob, unix.MSG_CMSG_CLOEXEC)
		return !errors.Is(rerr, unix.EAGAIN)
	})
	if err == nil {
		err = rerr
	}
	if oobn > 0 {
		if msgs, perr := unix.ParseSocketControlMessage(oob[:oobn]); perr == nil {
			for i := range msgs {
				if fds, err := unix.ParseUnixRights(&msgs[i]); err == nil {
					r.fds = append(r.fds, fds...)
				}
			}
		}
	}
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (r *fdReader) takeFd() (int, bool) {
	if len(r.fds) == 0 {
		return -1, false
	}
	fd := r.fds[0]
	r.fds = r.fds[1:]
	return fd, true
}

func (r *fdReader) closeFds() {
	for _, fd := range r.fds {
		unix.Close(fd)
	}
	r.fds = nil
}
