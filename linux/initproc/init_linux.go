package initproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/minishim/containerd-shim-mini-v2/linux/hooks"
	"github.com/minishim/containerd-shim-mini-v2/linux/seccomp/bpf"
	"github.com/minishim/containerd-shim-mini-v2/steptime"
)

// Main is the Go half of the container's init. The C preamble has put
// this process in the container's namespaces (and cgroup, via the parent);
// here the container is set up from the parent's config, init reports ready,
// waits for Start and execve()s the user's process. It never returns.
func Main() {
	fd, err := strconv.Atoi(os.Getenv("_MINI_SYNC_FD"))
	if err != nil || fd < 3 {
		fmt.Fprintln(os.Stderr, "containerd-shim-mini-v2 init: must be started by the shim")
		os.Exit(2)
	}
	// Nothing we run before execve (hooks) may inherit the socket or
	// anything else the shim handed down.
	if err := CloexecExtraFds(); err != nil {
		fmt.Fprintln(os.Stderr, "containerd-shim-mini-v2 init:", err)
		os.Exit(2)
	}
	conn := os.NewFile(uintptr(fd), "init-sync")
	// Timed from here; the shim compares with its own count to tell the
	// Go runtime's start apart.
	ctx, _ := steptime.With(context.Background())
	if err := runInit(ctx, conn); err != nil {
		// The parent turns this into Create's or Start's error.
		_ = WriteFrame(conn, ErrorMessage(err))
		os.Exit(1)
	}
	os.Exit(0) // unreachable: runInit only returns on error
}

func runInit(ctx context.Context, conn *os.File) error {
	var cfg Config
	if err := ReadFrame(conn, &cfg); err != nil {
		return fmt.Errorf("read config from shim: %w", err)
	}
	steptime.Mark(ctx, "config")
	if cfg.Exec {
		if cfg.Process == nil || len(cfg.Process.Args) == 0 {
			return fmt.Errorf("exec: process.args is empty: %w", errdefs.ErrInvalidArgument)
		}
		// The preamble put this process in every namespace of the
		// container (setns into the mount namespace also moved its root
		// and cwd there): only the process's own settings are left.
		return finishProcess(ctx, conn, cfg.Process, &cfg, nil)
	}
	spec := cfg.Spec
	proc := spec.Process

	// The hostname first: setupRootfs applies the sysctls, and a
	// kernel.hostname sysctl wins over spec.hostname, as with runc.
	if cfg.NewUTS {
		if spec.Hostname != "" {
			if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
				return fmt.Errorf("set hostname %q: %w", spec.Hostname, err)
			}
		}
		if spec.Domainname != "" {
			if err := unix.Setdomainname([]byte(spec.Domainname)); err != nil {
				return fmt.Errorf("set domainname %q: %w", spec.Domainname, err)
			}
		}
	}
	var mountFds map[int]int
	if len(cfg.IDMappedMounts) > 0 {
		var err error
		if mountFds, err = receiveMountFds(conn, cfg.IDMappedMounts); err != nil {
			return err
		}
	}
	err := setupRootfs(spec, cfg.Rootfs, rootfsOptions{
		MountFds:    mountFds,
		MountSource: func(index int) (int, error) { return requestMountSource(conn, index) },
		NoPivotRoot: cfg.NoPivotRoot,
		BeforePivot: func() error { return runHooksBeforePivot(conn, &cfg) },
	})
	if err != nil {
		return err
	}
	steptime.Mark(ctx, "rootfs")
	var afterStart func() error
	if spec.Hooks != nil && len(spec.Hooks.StartContainer) > 0 {
		afterStart = func() error {
			// In the container, as its user, under its filter, as runc.
			// A hook without env of its own gets the process's.
			return hooks.Run(context.Background(), "startContainer", spec.Hooks.StartContainer, cfg.hookState(specs.StateCreated),
				hooks.Options{Start: hooks.Direct, Env: proc.Env})
		}
	}
	return finishProcess(ctx, conn, proc, &cfg, afterStart)
}

// runHooksBeforePivot has the parent run the prestart and createRuntime
// hooks, in the runtime's namespaces, then runs the createContainer hooks
// here, in the container's, while paths still resolve on the host.
func runHooksBeforePivot(conn *os.File, cfg *Config) error {
	h := cfg.Spec.Hooks
	if h == nil {
		return nil
	}
	if len(h.Prestart) > 0 || len(h.CreateRuntime) > 0 {
		if err := WriteFrame(conn, Message{Type: MsgHooks}); err != nil {
			return fmt.Errorf("ask the shim to run the prestart and createRuntime hooks: %w", err)
		}
		var m Message
		if err := ReadFrame(conn, &m); err != nil {
			return fmt.Errorf("wait for the prestart and createRuntime hooks: %w", err)
		}
		switch m.Type {
		case MsgHooksDone:
		case MsgError:
			return ErrorFromMessage(m)
		default:
			return fmt.Errorf("%w %q while waiting for hooks", ErrUnexpectedMessage, m.Type)
		}
	}
	// runc runs these from the rootfs, with an empty environment.
	return hooks.Run(context.Background(), "createContainer", h.CreateContainer, cfg.hookState(specs.StateCreating),
		hooks.Options{Start: hooks.Direct, Dir: cfg.Rootfs})
}

// hookState is the state the container-side hooks get: as with runc, the
// pid is init's in the container's pid namespace.
func (cfg *Config) hookState(status specs.ContainerState) *specs.State {
	return &specs.State{
		Version: specs.Version, ID: cfg.ID, Status: status, Pid: os.Getpid(),
		Bundle: cfg.Bundle, Annotations: cfg.Spec.Annotations,
	}
}

// finishProcess applies what init and exec processes share (proc, and the
// container-wide settings in cfg), reports ready, waits for start, runs
// afterStart (init's startContainer hooks) and execve()s.
func finishProcess(ctx context.Context, conn *os.File, proc *specs.Process, cfg *Config, afterStart func() error) error {
	filter := cfg.Seccomp
	// Capabilities, no_new_privs, a seccomp filter, LSM exec labels and
	// the cpu affinity belong to a thread: everything from here to execve
	// runs on this one.
	runtime.LockOSThread()
	var attrs *threadAttrs
	if proc.ApparmorProfile != "" || proc.SelinuxLabel != "" {
		var err error
		if attrs, err = openThreadAttrs(); err != nil {
			return err
		}
		defer attrs.close()
		if err := attrs.applySELinuxKeyLabel(proc.SelinuxLabel); err != nil {
			return err
		}
	}
	if !cfg.NoNewKeyring {
		if err := joinSessionKeyring(cfg.ID, !cfg.Exec); err != nil {
			return err
		}
	}
	if err := applyRlimits(proc.Rlimits); err != nil {
		return err
	}
	cwd := proc.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if err := os.Chdir(cwd); err != nil {
		return fmt.Errorf("chdir to cwd %q in container: %w", cwd, AsNotFound(err))
	}
	path, err := lookPath(proc.Args, proc.Env)
	if err != nil {
		return err
	}
	if proc.Terminal {
		if err := setupTerminal(conn, proc); err != nil {
			return err
		}
	} else if _, err := unix.Setsid(); err != nil && !errors.Is(err, unix.EPERM) {
		// A session of its own, as runc gives every container process:
		// the shim's session is outside the container (CRIU refuses to
		// dump a process whose session leader it cannot see). EPERM: it
		// leads a process group already, and so its session stays.
		return fmt.Errorf("setsid: %w", err)
	}
	if err := applyProcessAttrs(proc, cfg.Personality, cfg.MemoryPolicy); err != nil {
		return err
	}
	if attrs != nil {
		if err := attrs.applySELinuxLabel(proc.SelinuxLabel); err != nil {
			return err
		}
		if !cfg.Exec {
			// Before the identity switch for init, after it for an exec,
			// as runc; the change happens at execve either way.
			if err := attrs.applyAppArmor(proc.ApparmorProfile); err != nil {
				return err
			}
		}
	}
	if filter != nil && !proc.NoNewPrivileges {
		// Without no_new_privs, loading a filter takes CAP_SYS_ADMIN,
		// which the identity switch may drop: load it first, as runc.
		if err := loadSeccomp(conn, filter); err != nil {
			return err
		}
	}
	if err := finalizeIdentity(proc); err != nil {
		return err
	}
	if attrs != nil && cfg.Exec {
		if err := attrs.applyAppArmor(proc.ApparmorProfile); err != nil {
			return err
		}
	}
	if filter != nil && proc.NoNewPrivileges {
		// As runc: the last step before ready, so that a filter that does
		// not load (or a listener out of reach) fails Create, and the
		// filter judges all that comes after (waiting for start, the
		// startContainer hooks, execve) and hardly anything else of ours.
		if err := loadSeccomp(conn, filter); err != nil {
			return err
		}
	}

	ready := Message{Type: MsgReady}
	if cfg.Steps {
		steptime.Mark(ctx, "process")
		ready.Steps = steptime.String(ctx)
	}
	if err := WriteFrame(conn, ready); err != nil {
		return fmt.Errorf("report ready: %w", err)
	}
	var m Message
	if err := ReadFrame(conn, &m); err != nil {
		if errors.Is(err, io.EOF) {
			// The shim went away or deleted us before Start.
			os.Exit(1)
		}
		return fmt.Errorf("wait for start: %w", err)
	}
	if m.Type != MsgStart {
		return fmt.Errorf("%w %q while waiting for start", ErrUnexpectedMessage, m.Type)
	}
	if afterStart != nil {
		if err := afterStart(); err != nil {
			return err
		}
	}
	if cfg.Affinity != nil {
		// The cpus a process runs on from execve on are this thread's:
		// the one that execve()s becomes the program's only thread.
		if err := unix.SchedSetaffinity(0, cfg.Affinity); err != nil && !cfg.AffinityBestEffort {
			return fmt.Errorf("process.execCPUAffinity.final: %w", err)
		}
	}
	// The socket must close on execve: that is how the parent learns it
	// succeeded.
	if err := CloexecExtraFds(); err != nil {
		return err
	}
	if err := unix.Exec(path, proc.Args, proc.Env); err != nil {
		return fmt.Errorf("exec %q: %w", path, err)
	}
	return nil
}

// loadSeccomp loads the filter on this thread. A filter with a listener
// gives a notify fd: its number goes to the parent, which takes the fd
// from this process and hands it to the listener, and this process waits
// for that before going on (the profile's calls may need the listener).
func loadSeccomp(conn *os.File, filter *bpf.Program) error {
	fd, err := bpf.Load(filter)
	if err != nil {
		return err
	}
	if fd < 0 {
		return nil
	}
	defer unix.Close(fd)
	if err := WriteFrame(conn, Message{Type: MsgSeccomp, Fd: fd}); err != nil {
		return fmt.Errorf("report the seccomp listener fd: %w", err)
	}
	var m Message
	if err := ReadFrame(conn, &m); err != nil {
		return fmt.Errorf("wait for the seccomp listener fd to be sent: %w", err)
	}
	if m.Type == MsgError {
		return ErrorFromMessage(m)
	}
	if m.Type != MsgSeccompDone {
		return fmt.Errorf("%w %q while waiting for the seccomp listener", ErrUnexpectedMessage, m.Type)
	}
	return nil
}

// setupTerminal gives the process a pty made inside the container (from its
// own devpts), makes the slave its controlling terminal and stdio, and sends
// the master to the shim, which copies it to containerd.
func setupTerminal(conn *os.File, proc *specs.Process) error {
	master, err := os.OpenFile("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("terminal: open /dev/ptmx in container: %w", err)
	}
	defer master.Close()
	mfd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		return fmt.Errorf("terminal: unlock pty: %w", err)
	}
	n, err := unix.IoctlGetInt(mfd, unix.TIOCGPTN)
	if err != nil {
		return fmt.Errorf("terminal: pty number: %w", err)
	}
	slavePath := "/dev/pts/" + strconv.Itoa(n)
	slave, err := openPtyPeer(mfd, slavePath)
	if err != nil {
		return err
	}
	defer slave.Close()
	sfd := int(slave.Fd())
	// The process owns its terminal, as on a login.
	if err := unix.Fchown(sfd, int(proc.User.UID), int(proc.User.GID)); err != nil {
		return fmt.Errorf("terminal: chown %s: %w", slavePath, err)
	}
	if cs := proc.ConsoleSize; cs != nil {
		ws := &unix.Winsize{Row: uint16(cs.Height), Col: uint16(cs.Width)}
		if err := unix.IoctlSetWinsize(sfd, unix.TIOCSWINSZ, ws); err != nil {
			return fmt.Errorf("terminal: set size: %w", err)
		}
	}
	// A new session, whose controlling terminal the slave becomes: Ctrl-C
	// then reaches the foreground process group, and job control works.
	if _, err := unix.Setsid(); err != nil {
		return fmt.Errorf("terminal: setsid: %w", err)
	}
	if err := unix.IoctlSetInt(sfd, unix.TIOCSCTTY, 0); err != nil {
		return fmt.Errorf("terminal: make %s the controlling terminal: %w", slavePath, err)
	}
	for fd := 0; fd <= 2; fd++ {
		if err := unix.Dup3(sfd, fd, 0); err != nil {
			return fmt.Errorf("terminal: dup %s to fd %d: %w", slavePath, fd, err)
		}
	}
	var frame bytes.Buffer
	if err := WriteFrame(&frame, Message{Type: MsgConsole}); err != nil {
		return err
	}
	if err := unix.Sendmsg(int(conn.Fd()), frame.Bytes(), unix.UnixRights(mfd), nil, 0); err != nil {
		return fmt.Errorf("terminal: send pty master to the shim: %w", err)
	}
	return nil
}

// openPtyPeer opens the pty's slave through its master (TIOCGPTPEER, Linux
// 4.13+) rather than by path: a container that can replace its /dev/pts
// could have the path lead to another file, which would then be chowned
// with the preamble's capabilities. Older kernels: by path.
func openPtyPeer(master int, path string) (*os.File, error) {
	fd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(master), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if errno == 0 {
		return os.NewFile(fd, path), nil
	}
	if errno != unix.EINVAL && errno != unix.ENOTTY {
		return nil, fmt.Errorf("terminal: open %s: %w", path, errno)
	}
	f, err := os.OpenFile(path, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("terminal: open %s: %w", path, err)
	}
	return f, nil
}

// AsNotFound adds errdefs.ErrNotFound to an error of a missing file.
func AsNotFound(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
	}
	return err
}
