package linux

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/minishim/containerd-shim-mini-v2/linux/criu"
	"github.com/minishim/containerd-shim-mini-v2/linux/initproc"
)

// restore brings the checkpoint c.restoreFrom names back as the
// container's init: CRIU restores the process tree into the cgroup and
// rootfs Create prepared, as a child of the shim, with the new stdio in
// place of the dumped pipes.
func (c *Container) restore(ctx context.Context, client criu.Client) (retErr error) {
	ro := c.restoreFrom
	defer func() {
		if retErr != nil && c.InitPid <= 0 {
			// Whatever CRIU restored before the failure goes: the cgroup
			// holds nothing else of the container's yet. Start may be
			// tried again.
			_ = c.KillAll()
		}
	}()
	if err := client.CheckVersion(ctx); err != nil {
		return fmt.Errorf("restore %s: %w", c.ID, err)
	}
	rec, err := readCheckpointRecord(ro.ImagePath)
	if err != nil {
		return fmt.Errorf("restore %s: %w", c.ID, err)
	}
	images, err := os.Open(ro.ImagePath)
	if err != nil {
		return fmt.Errorf("restore %s: image path: %w", c.ID, initproc.AsNotFound(err))
	}
	defer images.Close()
	work, cleanWork, err := criuWorkDir(ro.WorkPath, c.Bundle)
	if err != nil {
		return fmt.Errorf("restore %s: %w", c.ID, err)
	}
	defer cleanWork()

	rootfs := RootfsPath(c.Spec, c.Bundle)
	if err := prepareRestoreMountpoints(c.Spec, rootfs); err != nil {
		return fmt.Errorf("restore %s: %w", c.ID, err)
	}
	// CRIU wants the root to be a mount point whose parent is not
	// mounted over: a bind of the rootfs of our own, for the restore only.
	criuRoot := filepath.Join(c.Bundle, criuRootDir)
	if err := os.MkdirAll(criuRoot, 0o711); err != nil {
		return fmt.Errorf("restore %s: %w", c.ID, err)
	}
	defer os.Remove(criuRoot)
	if err := unix.Mount(rootfs, criuRoot, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("restore %s: bind the rootfs for CRIU: %w", c.ID, err)
	}
	defer func() { _ = unix.Unmount(criuRoot, unix.MNT_DETACH) }()

	cOpts := rec.criuOpts(images, work, "restore.log", criuRoot)
	cOpts.RstSibling = proto.Bool(true)
	cOpts.EvasiveDevices = proto.Bool(true)
	cOpts.ExtMnt = c.restoreExternalMounts()
	stdio := [3]*os.File{ro.Stdin, ro.Stdout, ro.Stderr}
	for fd, name := range rec.Descriptors {
		if (strings.HasPrefix(name, "pipe:") || strings.HasPrefix(name, "file[")) && stdio[fd] != nil {
			cOpts.InheritFd = append(cOpts.InheritFd, &rpc.InheritFd{Key: proto.String(name), Fd: proto.Int32(int32(fd))})
		}
	}
	var extra []*os.File
	defer func() {
		for _, f := range extra {
			f.Close()
		}
	}()
	for _, n := range c.Spec.Linux.Namespaces {
		if n.Path == "" {
			continue
		}
		if _, key := externalNamespaceName(n.Type); key != "" {
			f, err := os.Open(n.Path)
			if err != nil {
				return fmt.Errorf("restore %s: %s namespace %s: %w", c.ID, n.Type, n.Path, initproc.AsNotFound(err))
			}
			extra = append(extra, f)
			// criu's fd 3 is its socket, the extra files follow.
			cOpts.InheritFd = append(cOpts.InheritFd, &rpc.InheritFd{Key: proto.String(key), Fd: proto.Int32(int32(3 + len(extra)))})
			continue
		}
		if n.Type == specs.UTSNamespace || n.Type == specs.IPCNamespace {
			cOpts.JoinNs = append(cOpts.JoinNs, &rpc.JoinNamespace{Ns: proto.String(nsFiles[n.Type]), NsFile: proto.String(n.Path)})
			continue
		}
		return fmt.Errorf("restore %s: CRIU cannot join the %s namespace %s: %w", c.ID, n.Type, n.Path, errdefs.ErrNotImplemented)
	}

	pid := 0
	hookPid := 0
	runHooks := c.createRuntimeHooks(ctx, func() int { return hookPid })
	var console *os.File
	defer func() {
		if console != nil {
			console.Close()
		}
	}()
	notify := func(n criu.Notification) error {
		if n.Script == "orphan-pts-master" && len(n.Files) > 0 && console == nil {
			// The terminal's new master: CRIU made a pty pair whose
			// slave the restored process holds, in place of the one
			// whose master was the shim's.
			console, n.Files = n.Files[0], n.Files[1:]
		}
		for _, f := range n.Files {
			f.Close()
		}
		switch n.Script {
		case "setup-namespaces":
			// As runc: the prestart and createRuntime hooks, once the
			// restored init's namespaces exist (a network plugin sets up
			// the empty network namespace there).
			if runHooks != nil {
				hookPid = n.Pid
				return runHooks()
			}
		case "post-restore":
			pid = n.Pid
		}
		return nil
	}
	// Restored processes are born where criu is: in the container's
	// cgroup, which CRIU is told is their root.
	started := func(criuPid int) error {
		if err := c.cg.Add(criuPid); err != nil {
			return err
		}
		roots, err := cgroupRootsOf(criuPid)
		if err != nil {
			return err
		}
		cOpts.CgRoot = roots
		return nil
	}
	resp, err := client.Do(ctx, criu.Request{
		Type: rpc.CriuReqType_RESTORE, Opts: cOpts,
		Stdin: ro.Stdin, Stdout: ro.Stdout, Stderr: ro.Stderr, ExtraFiles: extra,
		Started: started, Notify: notify,
	})
	if err != nil {
		return fmt.Errorf("restore %s: %w%s", c.ID, err, keepCriuLog(work.Name(), "restore.log", c.Bundle, "criu-restore.log"))
	}
	if pid == 0 {
		pid = int(resp.GetRestore().GetPid())
	}
	if pid <= 0 {
		return fmt.Errorf("restore %s: CRIU did not say which process it restored", c.ID)
	}
	if c.Spec.Process.Terminal && console == nil {
		return fmt.Errorf("restore %s: CRIU gave no terminal for a container with one (process.terminal)", c.ID)
	}
	var pidNS uint64
	if c.privatePid {
		if pidNS, err = pidNamespaceOf(pid); err != nil {
			return fmt.Errorf("restore %s: %w", c.ID, err)
		}
	}
	if wantsCgroupDelegation(c.Spec) {
		if err := delegateContainerCgroup(c.cg, pid, c.Spec.Process.User.UID, inPidNamespace(pidNS)); err != nil {
			return fmt.Errorf("restore %s: %w", c.ID, err)
		}
	}
	c.joinRestoredTimeNamespace(pid)
	// Last: an exec may start once InitPid is set.
	c.Console, console = console, nil
	c.pidNS = pidNS
	c.InitPid = pid
	c.restoreFrom = nil
	return writeState(c.Bundle, c.diskState())
}

// criuRootDir, in the bundle, is where a restore binds the rootfs for
// CRIU while it runs.
const criuRootDir = "criu-root"

// removeCriuRoot undoes a restore's rootfs bind that a shim dying
// mid-restore left.
func removeCriuRoot(bundle string) error {
	dir := filepath.Join(bundle, criuRootDir)
	if _, err := os.Lstat(dir); err != nil {
		return nil
	}
	if err := initproc.UnmountRootfs(dir); err != nil {
		return err
	}
	return os.Remove(dir)
}

// joinRestoredTimeNamespace: CRIU restores into a time namespace of its
// own even where the spec asked for none; execs must join it too.
func (c *Container) joinRestoredTimeNamespace(pid int) {
	own, err1 := os.Readlink(fmt.Sprintf("/proc/%d/ns/time", pid))
	host, err2 := os.Readlink("/proc/self/ns/time")
	if err1 != nil || err2 != nil || own == host {
		return
	}
	for _, n := range c.Spec.Linux.Namespaces {
		if n.Type == specs.TimeNamespace {
			return
		}
	}
	spec := *c.Spec
	lx := *spec.Linux
	lx.Namespaces = append(append([]specs.LinuxNamespace{}, lx.Namespaces...), specs.LinuxNamespace{Type: specs.TimeNamespace})
	spec.Linux = &lx
	c.Spec = &spec
}

// cgroupRootsOf tells CRIU the cgroup of each hierarchy pid is in.
func cgroupRootsOf(pid int) ([]*rpc.CgroupRoot, error) {
	hierarchies, err := initproc.CgroupsOf(strconv.Itoa(pid))
	if err != nil {
		return nil, err
	}
	out := make([]*rpc.CgroupRoot, 0, len(hierarchies))
	for _, h := range hierarchies {
		out = append(out, &rpc.CgroupRoot{Ctrl: proto.String(h.Controllers), Path: proto.String(h.Path)})
	}
	return out, nil
}

// prepareRestoreMountpoints makes the destinations CRIU mounts on in the
// rootfs (a fresh snapshot lacks those the first run made).
func prepareRestoreMountpoints(spec *specs.Spec, rootfs string) error {
	dirs, files := restoreMountpoints(spec)
	for _, m := range []struct {
		paths []string
		dir   bool
	}{{dirs, true}, {files, false}} {
		for _, p := range m.paths {
			if _, err := initproc.CreateMountPoint(rootfs, p, m.dir); err != nil {
				return fmt.Errorf("mount point %s: %w", p, err)
			}
		}
	}
	return nil
}

// restoreExternalMounts maps each name the dump gave an external mount to
// what is bound there now.
func (c *Container) restoreExternalMounts() []*rpc.ExtMountMap {
	var out []*rpc.ExtMountMap
	add := func(key, val string) {
		out = append(out, &rpc.ExtMountMap{Key: proto.String(key), Val: proto.String(val)})
	}
	for dest, src := range externalBindMounts(c.Spec) {
		add(dest, src)
	}
	if len(c.Spec.Linux.MaskedPaths) > 0 {
		add("/dev/null", "/dev/null")
	}
	for _, d := range allDevicePaths(c.Spec) {
		add(d, d)
	}
	for dest, src := range c.cgroupBinds() {
		add(dest, src)
	}
	return out
}
