package linux

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// InitMain is the Go half of the container's init. The C preamble has put
// this process in the container's namespaces (and cgroup, via the parent);
// here the container is set up from the parent's config, init reports ready,
// waits for Start and execve()s the user's process. It never returns.
func InitMain() {
	fd, err := strconv.Atoi(os.Getenv("_MINI_SYNC_FD"))
	if err != nil || fd < 3 {
		fmt.Fprintln(os.Stderr, "containerd-shim-mini-v2 init: must be started by the shim")
		os.Exit(2)
	}
	conn := os.NewFile(uintptr(fd), "init-sync")
	if err := runInit(conn); err != nil {
		// The parent turns this into Create's or Start's error.
		_ = writeFrame(conn, message{Type: msgError, Error: err.Error(), Class: classOf(err)})
		os.Exit(1)
	}
	os.Exit(0) // unreachable: runInit only returns on error
}

func runInit(conn *os.File) error {
	var cfg initConfig
	if err := readFrame(conn, &cfg); err != nil {
		return fmt.Errorf("read config from shim: %w", err)
	}
	spec := cfg.Spec
	proc := spec.Process

	if err := SetupRootfs(spec, cfg.Rootfs); err != nil {
		return err
	}
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
	if err := ApplySysctl(spec.Linux.Sysctl); err != nil {
		return err
	}
	if err := ApplyRlimits(proc.Rlimits); err != nil {
		return err
	}
	if err := ApplyOOMScoreAdj(proc.OOMScoreAdj); err != nil {
		return err
	}
	cwd := proc.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if err := os.Chdir(cwd); err != nil {
		return fmt.Errorf("chdir to cwd %q in container: %w", cwd, asNotFound(err))
	}
	path, err := LookPath(proc.Args, proc.Env)
	if err != nil {
		return err
	}
	if err := FinalizeIdentity(proc); err != nil {
		return err
	}

	if err := writeFrame(conn, message{Type: msgReady}); err != nil {
		return fmt.Errorf("report ready: %w", err)
	}
	var m message
	if err := readFrame(conn, &m); err != nil {
		if errors.Is(err, io.EOF) {
			// The shim went away or deleted us before Start.
			os.Exit(1)
		}
		return fmt.Errorf("wait for start: %w", err)
	}
	if m.Type != msgStart {
		return fmt.Errorf("%w %q while waiting for start", errUnexpectedMessage, m.Type)
	}
	if err := closeExtraFds(); err != nil {
		return err
	}
	if err := unix.Exec(path, proc.Args, proc.Env); err != nil {
		return fmt.Errorf("exec %q: %w", path, err)
	}
	return nil
}

// closeExtraFds marks every fd above stderr close-on-exec, so nothing of the
// shim (the handshake socket, the sealed binary, Go's own fds) reaches the
// user's process. The handshake socket closing is also how the parent
// learns that execve succeeded.
func closeExtraFds() error {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list own fds: %w", err)
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd < 3 {
			continue
		}
		// The fd of ReadDir itself is already closed; failures on it are
		// harmless.
		_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
	}
	return nil
}
