package linux

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/minishim/containerd-shim-mini-v2/linux/initproc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// nsFiles names each namespace type's file under /proc/PID/ns.
var nsFiles = map[specs.LinuxNamespaceType]string{
	specs.PIDNamespace:     "pid",
	specs.NetworkNamespace: "net",
	specs.MountNamespace:   "mnt",
	specs.IPCNamespace:     "ipc",
	specs.UTSNamespace:     "uts",
	specs.UserNamespace:    "user",
	specs.CgroupNamespace:  "cgroup",
	specs.TimeNamespace:    "time",
}

// ExecOpts is one more process to run in a running container.
type ExecOpts struct {
	ID      string
	Process *specs.Process
	// Stdin, Stdout and Stderr become its fds 0, 1 and 2 (unused with a
	// terminal).
	Stdin, Stdout, Stderr *os.File
}

// ValidateExecProcess checks an exec's process spec before anything runs.
func ValidateExecProcess(id string, p *specs.Process) error {
	if p == nil {
		return fmt.Errorf("exec %s: process spec is missing: %w", id, errdefs.ErrInvalidArgument)
	}
	if len(p.Args) == 0 || p.Args[0] == "" {
		return fmt.Errorf("exec %s: process.args is empty: %w", id, errdefs.ErrInvalidArgument)
	}
	if p.Cwd != "" && !filepath.IsAbs(p.Cwd) {
		return fmt.Errorf("exec %s: process.cwd %q is not an absolute path: %w", id, p.Cwd, errdefs.ErrInvalidArgument)
	}
	if err := initproc.CheckProcessAttrs(p, nil); err != nil {
		return fmt.Errorf("exec %s: %w", id, err)
	}
	if _, err := parseCPUAffinity(p.ExecCPUAffinity); err != nil {
		return fmt.Errorf("exec %s: %w", id, err)
	}
	if err := initproc.CheckSELinuxLabel("exec "+id+": process.selinuxLabel", p.SelinuxLabel); err != nil {
		return err
	}
	return nil
}

// Exec brings a process up inside every namespace and the cgroup of the
// container's init, to the point where Start execve()s it. opts.Process
// was checked by ValidateExecProcess when the exec was asked for.
func (r *Runtime) Exec(ctx context.Context, c *Container, opts ExecOpts) (*Process, error) {
	if c.InitPid <= 0 || c.cg == nil {
		return nil, fmt.Errorf("exec %s in container %s: the container is not running: %w", opts.ID, c.ID, errdefs.ErrFailedPrecondition)
	}
	// The preamble joins init's namespaces by their /proc files: the same
	// ones whether init created them or joined them itself.
	var ns namespaces
	for _, n := range c.Spec.Linux.Namespaces {
		file, ok := nsFiles[n.Type]
		if !ok {
			continue
		}
		path := fmt.Sprintf("/proc/%d/ns/%s", c.InitPid, file)
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("exec %s in container %s: init is gone: %w", opts.ID, c.ID, errdefs.ErrFailedPrecondition)
		}
		ns.join = append(ns.join, nsJoin{flag: namespaceFlags[n.Type], path: path})
	}
	if err := checkProcessMapped("exec "+opts.ID+": process", opts.Process.User, c.Spec.Linux.UIDMappings, c.Spec.Linux.GIDMappings); err != nil {
		return nil, err
	}
	affinity, err := parseCPUAffinity(opts.Process.ExecCPUAffinity)
	if err != nil {
		return nil, err
	}
	final, bestEffort := affinity.final, false
	if final == nil && affinity.initial == nil && r.pinned() {
		// As runc: an exec of a shim pinned to fewer cpus gets back
		// every cpu its cgroup allows.
		final, bestEffort = allCPUs(), true
	}
	binary, err := r.containerBinary()
	if err != nil {
		return nil, err
	}
	p, err := r.spawn(ctx, spawnRequest{
		what:   "exec " + opts.ID,
		binary: binary,
		dir:    c.Bundle,
		ns:     ns,
		cg:     c.cg,
		config: initproc.Config{
			ID: c.ID, Exec: true, Process: opts.Process, Seccomp: c.seccomp, NoNewKeyring: c.noNewKeyring,
			Affinity: final, AffinityBestEffort: bestEffort,
			Personality: c.Spec.Linux.Personality, MemoryPolicy: c.Spec.Linux.MemoryPolicy,
		},
		stdin: opts.Stdin, stdout: opts.Stdout, stderr: opts.Stderr,
		seccompListener: c.seccompListener(specs.StateRunning),
		initialAffinity: affinity.initial,
		oomScoreAdj:     opts.Process.OOMScoreAdj,
	})
	if err != nil {
		return nil, c.ExecFailed(opts.ID, err)
	}
	return p, nil
}

// ExecFailed is the error of exec execID that failed with err at any step
// of bringing it up or releasing it. When the container's init has ended
// or is ending, the exec lost a race with that end (its namespaces or
// cgroup, or the exec itself, killed with the pid namespace, went
// meanwhile): that is the caller's precondition, as for an exec into a
// stopped container, not a failure of ours, and err says what broke.
// Otherwise err is returned as it is.
func (c *Container) ExecFailed(execID string, err error) error {
	if c.InitPid > 0 && !processExiting(c.InitPid) {
		return err
	}
	return fmt.Errorf("exec %s in container %s: the container's init exited meanwhile (%v): %w",
		execID, c.ID, err, errdefs.ErrFailedPrecondition)
}
