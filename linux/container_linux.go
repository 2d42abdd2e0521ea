package linux

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/minishim/containerd-shim-mini-v2/linux/hooks"
	"github.com/minishim/containerd-shim-mini-v2/linux/initproc"
	"github.com/minishim/containerd-shim-mini-v2/linux/seccomp"
	"github.com/minishim/containerd-shim-mini-v2/steptime"
)

// StartFunc starts cmd and reports its exit status on the returned channel,
// which must have room for it. The shim's reaper provides it: the reaper
// reaps every child, so nothing here may call cmd.Wait.
type StartFunc = hooks.Starter

// Runtime creates containers. A shim daemon has one.
type Runtime struct {
	start StartFunc
	// seccomp compiles each distinct profile once for all containers.
	seccomp seccomp.Cache

	// binary is what container processes start from (containerBinary),
	// opened once, at first use, where nothing can write to it
	// (selfexe_linux.go): a shim keeps starting them from the build it
	// found then, also after both binaries are replaced under it.
	binaryOnce sync.Once
	binary     containerBinaryFile
	binaryErr  error

	pinnedOnce sync.Once
	isPinned   bool

	// lastCapability is the kernel's last capability, asked once.
	lastCapOnce    sync.Once
	lastCapability int

	// selfMoveLockFree: a thread moving itself into a v1 cgroup skips
	// the kernel's global threadgroup lock here (Linux 5.17, "cgroup:
	// Optimize single thread migration"), so the preamble places itself
	// (cgroup_self_linux.go). Before that it would wait for the lock's
	// grace period first thing, and the shim's move, overlapped with the
	// process's own setup, is the cheaper way.
	selfMoveLockFree bool
}

// pinned says whether the shim runs on fewer cpus than are online; looked
// up once.
func (r *Runtime) pinned() bool {
	r.pinnedOnce.Do(func() { r.isPinned = shimPinned() })
	return r.isPinned
}

// seccompCacheDir keeps compiled seccomp programs for every shim of the
// host: root-only, on /run's tmpfs, so a reboot (or a new kernel) starts it
// over.
const seccompCacheDir = "/run/containerd-shim-mini-v2/seccomp"

// NewRuntime returns a Runtime that starts processes with start.
func NewRuntime(start StartFunc) *Runtime {
	return &Runtime{start: start, seccomp: seccomp.Cache{Dir: seccompCacheDir}, selfMoveLockFree: kernelAtLeast(5, 17)}
}

// containerBinaryFile is the binary container processes start from.
type containerBinaryFile struct {
	sealed *os.File
	// name is its own (argv[0] of what starts from it).
	name string
}

// path is where a child finds it.
func (b containerBinaryFile) path() string {
	return "/proc/self/fd/" + strconv.Itoa(int(b.sealed.Fd()))
}

// containerBinary is what a container process is started from: the binary
// sealed, for every process, inits with a pid namespace of
// their own too. A container process can see init before its execve (an
// exec while the container is created, a startContainer hook), and once
// nothing runs the file any more the kernel would let a write through
// /proc/PID/exe of the binary itself.
func (r *Runtime) containerBinary() (containerBinaryFile, error) {
	r.binaryOnce.Do(func() {
		path, name, err := findContainerBinary()
		if err != nil {
			r.binaryErr = err
			return
		}
		sealed, err := sealedBinary(path)
		if err != nil {
			r.binaryErr = err
			return
		}
		r.binary = containerBinaryFile{sealed: sealed, name: name}
	})
	if r.binaryErr != nil {
		return containerBinaryFile{}, fmt.Errorf("binary for container processes: %w", r.binaryErr)
	}
	return r.binary, nil
}

// lastCap is initproc.LastCap, which the kernel's answer does not change.
func (r *Runtime) lastCap() int {
	r.lastCapOnce.Do(func() { r.lastCapability = initproc.LastCap() })
	return r.lastCapability
}

// Mount is one rootfs component containerd sent.
type Mount = initproc.Mount

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
	// SystemdCgroup asks for the systemd cgroup driver (the runtime
	// option of that name); a "slice:prefix:name" cgroupsPath does too.
	SystemdCgroup bool
	// NoPivotRoot moves the rootfs onto / and chroots instead of
	// pivot_root (runc's option, for a root on ramfs, where pivot_root
	// fails); the old root stays under it, so it confines less.
	NoPivotRoot bool
	// NoNewKeyring keeps the shim's session keyring (runc's option)
	// instead of giving the container one of its own.
	NoNewKeyring bool
	// Restore, when set, prepares the container for a restore from a
	// checkpoint at Start: its cgroup and rootfs are made, no init is
	// spawned (Stdin, Stdout and Stderr are Restore's).
	Restore *RestoreOpts
}

// Container is a created container whose init waits for Start.
type Container struct {
	ID     string
	Bundle string
	Spec   *specs.Spec
	// InitPid is init's pid in the shim's pid namespace.
	InitPid int

	// Console is init's pty master when it has a terminal; the caller
	// owns it.
	Console *os.File

	cg          Cgroup
	rootfsMount string
	privatePid  bool
	// pidNS is the inode of init's pid namespace when it is its own, else 0.
	pidNS uint64
	init  *Process
	// seccomp is the compiled linux.seccomp, loaded by init and each exec.
	seccomp *seccomp.Program
	// start runs the hooks the shim runs (through its reaper).
	start StartFunc
	// poststopDone keeps Destroy, which may run more than once, from
	// running the poststop hooks twice.
	poststopDone bool
	// noNewKeyring is CreateOpts', for the container's execs.
	noNewKeyring bool
	// restoreFrom is the checkpoint Start restores; nil once restored, and
	// for a container created to run its own init.
	restoreFrom *RestoreOpts
}

// Create sets up the container up to the point where only execve() of the
// user's process is left. On error nothing is left behind.
func (r *Runtime) Create(ctx context.Context, opts CreateOpts) (_ *Container, retErr error) {
	spec := opts.Spec
	ns, err := namespacesOf(spec)
	if err != nil {
		return nil, err
	}
	cgPlace, err := placeCgroup(spec.Linux.CgroupsPath, opts.ID, opts.SystemdCgroup)
	if err != nil {
		return nil, err
	}
	steptime.Mark(ctx, "spec")
	if cgPlace.Unit != "" && !systemdRunning() {
		return nil, fmt.Errorf("config.json: linux.cgroupsPath %q asks for the systemd cgroup driver, but systemd is not running on this host (no /run/systemd/system); use the cgroupfs driver (SystemdCgroup = false, a cgroupsPath without colons): %w",
			spec.Linux.CgroupsPath, errdefs.ErrFailedPrecondition)
	}
	c := &Container{
		ID:           opts.ID,
		Bundle:       opts.Bundle,
		Spec:         spec,
		privatePid:   ns.unshare&unix.CLONE_NEWPID != 0,
		start:        r.start,
		noNewKeyring: opts.NoNewKeyring,
	}
	if spec.Linux.Seccomp != nil {
		// Before anything is made: a profile that does not compile
		// leaves nothing to undo.
		if c.seccomp, err = r.seccomp.Compile(spec.Linux.Seccomp); err != nil {
			return nil, err
		}
		steptime.Mark(ctx, "seccomp")
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
		c.rootfsMount = rootfs
	}
	// Record the mount and the cgroup before making them, so `delete`
	// after a crash in between cleans up too (unmounting what is not
	// mounted and loading a cgroup that does not exist are harmless).
	if err := writeState(opts.Bundle, diskState{ID: c.ID, Cgroup: cgPlace.Path, SystemdUnit: cgPlace.Unit, SystemdSlice: cgPlace.Slice, RootfsMount: c.rootfsMount}); err != nil {
		return nil, err
	}
	c.cg, err = newCgroup(cgPlace, spec.Linux.Resources, "containerd-shim-mini-v2 container "+opts.ID)
	if err != nil {
		return nil, err
	}
	steptime.Mark(ctx, "cgroup")
	if len(opts.Rootfs) > 0 {
		if err := os.MkdirAll(rootfs, 0o711); err != nil {
			return nil, fmt.Errorf("create rootfs mount point %s: %w", rootfs, err)
		}
		userns := func(uid, gid []specs.LinuxIDMapping) (int, error) { return r.newUserNamespace(ctx, uid, gid) }
		if err := initproc.MountRootfs(opts.Rootfs, rootfs, userns); err != nil {
			return nil, err
		}
	}
	steptime.Mark(ctx, "rootfs")
	if fi, err := os.Stat(rootfs); err != nil {
		return nil, fmt.Errorf("rootfs %s: %w", rootfs, initproc.AsNotFound(err))
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("rootfs %s is not a directory: %w", rootfs, errdefs.ErrInvalidArgument)
	}

	if opts.Restore != nil {
		c.restoreFrom = opts.Restore
		return c, nil
	}
	idmappedIndexes, mountFds, err := r.openIDMappedMounts(ctx, spec, opts.Bundle)
	if err != nil {
		return nil, err
	}
	// Init has its own copies once the config went out.
	defer closeFds(mountFds)
	binary, err := r.containerBinary()
	if err != nil {
		return nil, err
	}
	// Init of a shim pinned to fewer cpus gets back every cpu its cgroup
	// allows, as runc does.
	var initAffinity *unix.CPUSet
	if r.pinned() {
		initAffinity = allCPUs()
	}
	var state diskState // with init's pid, for `delete` after a crash
	p, err := r.spawn(ctx, spawnRequest{
		what:   "container init",
		binary: binary,
		dir:    opts.Bundle,
		ns:     ns,
		cg:     c.cg,
		config: initproc.Config{
			ID: c.ID, Bundle: c.Bundle, Rootfs: rootfs,
			// Init learns the cgroup the shim chose (also when the
			// spec named none).
			Spec:   initproc.ContainerSpecOf(spec, c.cg.Path()),
			NewUTS: ns.unshare&unix.CLONE_NEWUTS != 0, Seccomp: c.seccomp,
			Personality: spec.Linux.Personality, MemoryPolicy: spec.Linux.MemoryPolicy,
			NoPivotRoot: opts.NoPivotRoot, NoNewKeyring: opts.NoNewKeyring,
			Affinity: initAffinity, AffinityBestEffort: true,
			IDMappedMounts: idmappedIndexes,
		},
		mountFds:    mountFds,
		mountSource: func(index int) (int, error) { return bindSourceClone(spec, opts.Bundle, index) },
		stdin:       opts.Stdin, stdout: opts.Stdout, stderr: opts.Stderr,
		recordPid: func(pid int) error {
			c.InitPid = pid
			if c.privatePid {
				var err error
				if c.pidNS, err = pidNamespaceOf(pid); err != nil {
					return fmt.Errorf("container init's pid namespace: %w", err)
				}
			}
			state = c.diskState()
			return nil
		},
		saveState:       func() error { return writeState(c.Bundle, state) },
		seccompListener: c.seccompListener(specs.StateCreating),
		hooks:           c.createRuntimeHooks(ctx, func() int { return c.InitPid }),
		oomScoreAdj:     spec.Process.OOMScoreAdj,
	})
	if err != nil {
		return nil, err
	}
	c.init = p
	c.InitPid = p.Pid
	c.Console = p.Console
	p.Console = nil
	// Before Start: no process of the container's may use it before it is
	// handed over. On v1 (and v1 hosts with a unified hierarchy beside)
	// there is nothing to hand, as with runc.
	if wantsCgroupDelegation(spec) {
		// Nothing but init may be there yet.
		if err := delegateContainerCgroup(c.cg, p.Pid, spec.Process.User.UID, func(pid int) bool { return pid == p.Pid }); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// createRuntimeHooks runs the prestart (deprecated, still what GPU
// toolkits install) and then the createRuntime hooks, in the shim's
// namespaces, once init's namespaces and mounts exist; nil without any.
func (c *Container) createRuntimeHooks(ctx context.Context, pid func() int) func() error {
	h := c.Spec.Hooks
	if h == nil || len(h.Prestart)+len(h.CreateRuntime) == 0 {
		return nil
	}
	return func() error {
		st := c.hookState(specs.StateCreating, pid())
		opts := c.hookOptions()
		if err := hooks.Run(ctx, "prestart", h.Prestart, st, opts); err != nil {
			return err
		}
		return hooks.Run(ctx, "createRuntime", h.CreateRuntime, st, opts)
	}
}

// hookState is the container's state as the shim's hooks get it.
func (c *Container) hookState(status specs.ContainerState, pid int) *specs.State {
	return &specs.State{
		Version: specs.Version, ID: c.ID, Status: status, Pid: pid,
		Bundle: c.Bundle, Annotations: c.Spec.Annotations,
	}
}

// hookOptions runs the shim's hooks through its reaper, or directly where
// there is none (`delete` after a crash).
func (c *Container) hookOptions() hooks.Options {
	if c.start == nil {
		return hooks.Options{Start: hooks.Direct}
	}
	return hooks.Options{Start: c.start}
}

// seccompListener is what hands a process's seccomp notify fd to the
// profile's listener, with the container in status; nil without one.
func (c *Container) seccompListener(status specs.ContainerState) func(pid, fd int) error {
	if c.seccomp == nil || !c.seccomp.Listener() {
		return nil
	}
	profile := c.Spec.Linux.Seccomp
	return func(pid, fd int) error {
		initPid := c.InitPid
		if initPid <= 0 {
			initPid = pid
		}
		return seccomp.SendToListener(profile.ListenerPath, pid, fd, specs.ContainerProcessState{
			Version:  specs.Version,
			Pid:      pid,
			Metadata: profile.ListenerMetadata,
			State:    *c.hookState(status, initPid),
		})
	}
}

func (c *Container) diskState() diskState {
	st := diskState{ID: c.ID, InitPid: c.InitPid, PidNS: c.pidNS, RootfsMount: c.rootfsMount}
	if c.cg != nil {
		st.Cgroup = c.cg.Path()
		if sd, ok := c.cg.(*systemdCgroup); ok {
			st.SystemdUnit, st.SystemdSlice = sd.place.Unit, sd.place.Slice
		}
	}
	if c.InitPid > 0 {
		st.InitStart, _ = processStartTime(c.InitPid)
	}
	return st
}

// Start lets init execve() the user's process, then runs the poststart
// hooks. A failing poststart hook kills the container (as runc does) and
// fails Start.
func (c *Container) Start(ctx context.Context) error {
	if c.restoreFrom != nil {
		return c.restore(ctx, c.criu())
	}
	if c.init == nil {
		return fmt.Errorf("container %s: init is not waiting for start: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	p := c.init
	c.init = nil
	if err := p.Start(ctx); err != nil {
		return err
	}
	if h := c.Spec.Hooks; h != nil && len(h.Poststart) > 0 {
		err := hooks.Run(ctx, "poststart", h.Poststart, c.hookState(specs.StateRunning, c.InitPid), c.hookOptions())
		if err != nil {
			_ = c.Signal(unix.SIGKILL, true)
			return fmt.Errorf("%w (the container was killed)", err)
		}
	}
	return nil
}

// Signal sends sig to init, or with all to every process of the container.
func (c *Container) Signal(sig unix.Signal, all bool) error {
	if c.InitPid <= 0 {
		return fmt.Errorf("container %s has no process yet (it is restored at start): %w", c.ID, errdefs.ErrNotFound)
	}
	if all && c.cg != nil {
		// Only its own: another container may share the cgroup.
		return signalCgroup(c.cg, sig, c.ownsPid)
	}
	return signalPid(c.InitPid, sig)
}

// signalPid sends sig to pid; a process that is gone is ErrNotFound.
func signalPid(pid int, sig unix.Signal) error {
	if err := unix.Kill(pid, sig); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("process %d already finished: %w", pid, errdefs.ErrNotFound)
		}
		return fmt.Errorf("signal %d to process %d: %w", sig, pid, err)
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
	return killCgroup(c.cg, 5*time.Second, nil)
}

// ownsPid says whether pid is a process of this container. With a pid
// namespace of its own, that is its processes; without one, every process
// of its cgroup (as runc kills them all). Another container may share the
// cgroup (one cgroupsPath for several, as ctr's `oci spec` writes), and its
// processes are not ours to kill.
func (c *Container) ownsPid(pid int) bool { return inPidNamespace(c.pidNS)(pid) }

// inPidNamespace says of a pid whether it is in the pid namespace of inode
// ns; every pid is, for ns 0 (no namespace of the container's own).
func inPidNamespace(ns uint64) func(pid int) bool {
	return func(pid int) bool {
		if ns == 0 {
			return true
		}
		ino, err := pidNamespaceOf(pid)
		return err == nil && ino == ns
	}
}

// pidNamespaceOf is the inode of pid's pid namespace.
func pidNamespaceOf(pid int) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/"+strconv.Itoa(pid)+"/ns/pid", &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// Destroy undoes Create: kills what is left, removes the cgroup, unmounts
// the rootfs it mounted and removes its state. Safe to call more than once.
func (c *Container) Destroy(ctx context.Context) error {
	var errs []error
	if c.init != nil {
		c.init.Abandon()
		c.init = nil
	}
	if c.cg != nil {
		if err := killCgroup(c.cg, 5*time.Second, c.ownsPid); err != nil {
			errs = append(errs, err)
		} else if err := deleteCgroupRetry(c.cg); err != nil {
			if pids, perr := c.cg.Pids(); perr == nil && len(pids) > 0 && !slices.ContainsFunc(pids, c.ownsPid) {
				// Shared with another container still running: its last
				// Delete removes it.
				slog.InfoContext(ctx, "cgroup left in place: other containers' processes are in it", "id", c.ID, "cgroup", c.cg.Path(), "pids", pids)
				c.cg = nil
			} else {
				errs = append(errs, err)
			}
		} else {
			c.cg = nil
		}
		steptime.Mark(ctx, "kill+cgroup")
	}
	if err := removeCriuRoot(c.Bundle); err != nil {
		errs = append(errs, err)
	}
	if c.rootfsMount != "" {
		if err := initproc.UnmountRootfs(c.rootfsMount); err != nil {
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
	steptime.Mark(ctx, "rootfs+state")
	c.runPoststop(ctx)
	return errors.Join(errs...)
}

// runPoststop runs the poststop hooks once. As the runtime spec asks, a
// failure is logged and the deletion goes on.
func (c *Container) runPoststop(ctx context.Context) {
	if c.poststopDone || c.Spec == nil || c.Spec.Hooks == nil || len(c.Spec.Hooks.Poststop) == 0 {
		return
	}
	c.poststopDone = true
	err := hooks.Run(ctx, "poststop", c.Spec.Hooks.Poststop, c.hookState(specs.StateStopped, 0), c.hookOptions())
	if err != nil {
		slog.WarnContext(ctx, "poststop hook failed; the container is deleted anyway", "id", c.ID, "error", err)
	}
}

// deleteCgroupRetry retries for a moment: a killed process leaves its
// cgroup only once the kernel has fully torn it down.
func deleteCgroupRetry(cg Cgroup) error {
	var err error
	for i := 0; i < 100; i++ {
		if err = cg.Delete(); err == nil {
			return nil
		}
		// systemd that does not answer will not answer sooner for asking.
		if errdefs.IsUnavailable(err) || errors.Is(err, context.DeadlineExceeded) {
			return err
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
	c := &Container{ID: st.ID, Bundle: bundle, rootfsMount: st.RootfsMount, InitPid: st.InitPid, pidNS: st.PidNS}
	// The poststop hooks run after a shim crash too (runc-v2's `delete`
	// runs `runc delete --force`, which runs them). The spec is not checked
	// again: the namespaces it named may be gone by now.
	if spec, err := readSpec(bundle); err == nil && hooks.Validate(spec.Hooks) == nil {
		c.Spec = spec
	}
	if st.Cgroup != "" {
		cg, err := loadCgroup(cgroupPlacement{Path: st.Cgroup, Unit: st.SystemdUnit, Slice: st.SystemdSlice})
		if err == nil {
			c.cg = cg
		} else if !errdefs.IsNotFound(err) {
			return st.InitPid, err
		}
	}
	return st.InitPid, c.Destroy(ctx)
}

func (c *Container) cgroup() (Cgroup, error) {
	if c.cg == nil {
		return nil, fmt.Errorf("container %s has no cgroup: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	return c.cg, nil
}

// Update applies new resources to the container's cgroup.
func (c *Container) Update(r *specs.LinuxResources) error {
	cg, err := c.cgroup()
	if err != nil {
		return err
	}
	if err := ValidateResources(r); err != nil {
		return err
	}
	if r != nil && len(r.Devices) > 0 {
		r = withStandardDevices(r)
	}
	return cg.Update(r)
}

// Stats are the container's cgroup metrics.
func (c *Container) Stats() (proto.Message, error) {
	cg, err := c.cgroup()
	if err != nil {
		return nil, err
	}
	return cg.Stats()
}

// Pause freezes every process of the container.
func (c *Container) Pause() error {
	cg, err := c.cgroup()
	if err != nil {
		return err
	}
	return cg.Freeze()
}

// Resume thaws the container.
func (c *Container) Resume() error {
	cg, err := c.cgroup()
	if err != nil {
		return err
	}
	return cg.Thaw()
}

// WatchOOM calls onOOM for each OOM kill in the container until stop closes.
func (c *Container) WatchOOM(stop <-chan struct{}, onOOM func()) error {
	cg, err := c.cgroup()
	if err != nil {
		return err
	}
	return cg.WatchOOM(stop, onOOM)
}
