package linux

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"github.com/containerd/cgroups/v3"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/minishim/containerd-shim-mini-v2/linux/criu"
	"github.com/minishim/containerd-shim-mini-v2/linux/initproc"
)

// criuLogLevel is CRIU's most verbose but one: what a failed dump needs to
// be understood.
const criuLogLevel = 4

// criu is the CRIU client of the container, whose criu processes the
// shim's reaper collects.
func (c *Container) criu() criu.Client { return criu.Client{Start: c.start} }

// Checkpoint dumps container c with CRIU into opts.ImagePath. With
// opts.Exit the container ends with the dump (its init's exit is reported
// as any); otherwise it runs on. A dump CRIU refuses leaves the container
// as it was and fails naming CRIU's reason and its log, copied into the
// bundle as criu-dump.log.
func (r *Runtime) Checkpoint(ctx context.Context, c *Container, opts CheckpointOpts) error {
	if c.InitPid <= 0 || c.cg == nil {
		return fmt.Errorf("checkpoint %s: the container is not running: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	if opts.ImagePath == "" {
		return fmt.Errorf("checkpoint %s: no image path: %w", c.ID, errdefs.ErrInvalidArgument)
	}
	emptyNs, err := emptyNamespaceFlags(opts.EmptyNamespaces)
	if err != nil {
		return err
	}
	cgMode, err := cgroupsMode(opts.CgroupsMode)
	if err != nil {
		return err
	}
	client := c.criu()
	if err := client.CheckVersion(ctx); err != nil {
		return fmt.Errorf("checkpoint %s: %w", c.ID, err)
	}
	// A failed dump leaves no half of itself: a directory this dump made
	// or found empty is emptied again (one holding something else is not
	// ours to clear).
	fresh := false
	if entries, err := os.ReadDir(opts.ImagePath); errors.Is(err, os.ErrNotExist) || (err == nil && len(entries) == 0) {
		fresh = true
	}
	if err := os.MkdirAll(opts.ImagePath, 0o700); err != nil {
		return fmt.Errorf("checkpoint %s: image path: %w", c.ID, err)
	}

	images, err := os.Open(opts.ImagePath)
	if err != nil {
		return fmt.Errorf("checkpoint %s: image path: %w", c.ID, err)
	}
	defer images.Close()
	work, cleanWork, err := criuWorkDir(opts.WorkPath, c.Bundle)
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", c.ID, err)
	}
	defer cleanWork()

	rec := checkpointRecord{
		FileLocks: opts.FileLocks, TCPEstablished: opts.OpenTCP, ExtUnixSk: opts.ExternalUnixSockets,
		ShellJob: opts.Terminal, EmptyNs: emptyNs,
	}
	// Init's mounts, read once: which of its stdio files lie outside the
	// container, and which of its paths are mounts.
	mounts, _ := initproc.ReadMountinfo(fmt.Sprintf("/proc/%d/mountinfo", c.InitPid))
	var externalFiles []string
	for fd := range rec.Descriptors {
		rec.Descriptors[fd], externalFiles = c.stdioDescriptor(fd, mounts, externalFiles)
	}
	cOpts := rec.criuOpts(images, work, "dump.log", RootfsPath(c.Spec, c.Bundle))
	cOpts.Pid = proto.Int32(int32(c.InitPid))
	cOpts.LeaveRunning = proto.Bool(!opts.Exit)
	cOpts.FreezeCgroup = proto.String(c.freezerPath())
	cOpts.ManageCgroupsMode = cgMode
	if opts.ParentPath != "" {
		cOpts.ParentImg = proto.String(opts.ParentPath)
		cOpts.TrackMem = proto.Bool(true)
	}
	external, err := externalNamespaces(c.Spec)
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", c.ID, err)
	}
	cOpts.External = append(external, externalFiles...)
	cOpts.ExtMnt = c.dumpExternalMounts(mounts)
	// Not cancelled halfway: a criu killed mid-dump would leave the
	// container frozen (CRIU froze its cgroup) with parasite code in it.
	if _, err := client.Do(context.WithoutCancel(ctx), criu.Request{Type: rpc.CriuReqType_DUMP, Opts: cOpts}); err != nil {
		if fresh {
			clearDir(opts.ImagePath)
		}
		return fmt.Errorf("checkpoint %s: %w%s", c.ID, err, keepCriuLog(work.Name(), "dump.log", c.Bundle, "criu-dump.log"))
	}
	if err := writeCheckpointRecord(opts.ImagePath, rec); err != nil {
		return err
	}
	if opts.CopyTo != "" && !sameDir(opts.CopyTo, opts.ImagePath) {
		if err := copyImages(opts.ImagePath, opts.CopyTo); err != nil {
			return fmt.Errorf("checkpoint %s: %w", c.ID, err)
		}
	}
	return nil
}

// sameDir says whether a and b are one directory, however spelled.
func sameDir(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// copyImages copies a checkpoint's files into dst (CRIU's image directory
// is flat, with a "parent" symlink for an incremental dump), linking
// regular files where it can. What dst held under those names goes first:
// writing through an old link would change the source.
func copyImages(src, dst string) error {
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return fmt.Errorf("image path %s: %w", dst, err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		from, to := filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())
		if err := os.RemoveAll(to); err != nil {
			return fmt.Errorf("image path %s: %w", dst, err)
		}
		switch {
		case e.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink(from)
			if err == nil {
				err = os.Symlink(target, to)
			}
			if err != nil {
				return fmt.Errorf("copy checkpoint link %s to %s: %w", e.Name(), dst, err)
			}
		case e.Type().IsRegular():
			if err := os.Link(from, to); err == nil {
				continue
			}
			if err := copyImageFile(from, to); err != nil {
				return fmt.Errorf("copy checkpoint file %s to %s: %w", e.Name(), dst, err)
			}
		}
	}
	return nil
}

func copyImageFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// stdioDescriptor is how a restore finds init's fd again: a pipe by its
// name ("pipe:[123]"); a file on a mount outside the container (the
// shim's /dev/null for a task without that stream) is made external to
// CRIU, which could not reopen it, by "file[mnt_id:inode]", the name it
// is handed back by. Others (a file inside the container) CRIU reopens.
func (c *Container) stdioDescriptor(fd int, initMounts []initproc.MountinfoEntry, external []string) (string, []string) {
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", c.InitPid, fd))
	if err != nil || initMounts == nil || strings.HasPrefix(link, "pipe:") || strings.HasPrefix(link, "socket:") || strings.HasPrefix(link, "anon_inode:") {
		return link, external
	}
	info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", c.InitPid, fd))
	if err != nil {
		return link, external
	}
	mntID := -1
	for _, line := range strings.Split(string(info), "\n") {
		if v, ok := strings.CutPrefix(line, "mnt_id:"); ok {
			mntID, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if mntID < 0 || slices.ContainsFunc(initMounts, func(m initproc.MountinfoEntry) bool { return m.ID == mntID }) {
		return link, external
	}
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", c.InitPid, fd), &st); err != nil {
		return link, external
	}
	key := fmt.Sprintf("file[%x:%x]", mntID, st.Ino)
	return key, append(external, key)
}

// clearDir removes what dir holds.
func clearDir(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		_ = os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

// criuWorkDir opens dir, or a fresh one in the bundle that clean removes.
func criuWorkDir(dir, bundle string) (*os.File, func(), error) {
	keep := dir != ""
	if !keep {
		dir = filepath.Join(bundle, "criu-work")
		_ = os.RemoveAll(dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("criu work dir: %w", err)
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("criu work dir: %w", err)
	}
	return f, func() {
		f.Close()
		if !keep {
			_ = os.RemoveAll(dir)
		}
	}, nil
}

// keepCriuLog copies CRIU's log out of a work dir that may be removed and
// returns, for an error message, where it is and its error lines.
func keepCriuLog(workDir, name, bundle, keepAs string) string {
	src := filepath.Join(workDir, name)
	dst := filepath.Join(bundle, keepAs)
	in, err := os.Open(src)
	if err != nil {
		return fmt.Sprintf(" (no CRIU log at %s: %v)", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Sprintf("; CRIU's log: %s", src)
	}
	_, cerr := io.Copy(out, in)
	out.Close()
	if cerr != nil {
		dst = src
	}
	return fmt.Sprintf("; CRIU's log: %s%s", dst, criuErrorLines(dst))
}

// criuErrorLines are the last few "Error" lines of a CRIU log.
func criuErrorLines(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		if strings.Contains(s.Text(), "Error") {
			lines = append(lines, strings.TrimSpace(s.Text()))
		}
	}
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	if len(lines) == 0 {
		return ""
	}
	return ":\n" + strings.Join(lines, "\n")
}

// freezerPath is the cgroup CRIU freezes the container's tree with: v1's
// freezer hierarchy, or the v2 cgroup itself.
func (c *Container) freezerPath() string {
	if cgroups.Mode() == cgroups.Unified {
		return filepath.Join(cgroupRoot, c.cg.Path())
	}
	return filepath.Join(cgroupRoot, "freezer", c.cg.Path())
}

// externalNamespaces names to CRIU the network and pid namespaces the
// container joined by path: they are not its own to dump, and a restore
// hands them back by these names.
func externalNamespaces(spec *specs.Spec) ([]string, error) {
	var out []string
	for _, n := range spec.Linux.Namespaces {
		name, key := externalNamespaceName(n.Type)
		if name == "" || n.Path == "" {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(n.Path, &st); err != nil {
			return nil, fmt.Errorf("%s namespace %s: %w", n.Type, n.Path, err)
		}
		out = append(out, fmt.Sprintf("%s[%d]:%s", name, st.Ino, key))
	}
	return out, nil
}

func externalNamespaceName(t specs.LinuxNamespaceType) (name, key string) {
	switch t {
	case specs.NetworkNamespace:
		return "net", "extRootNetNS"
	case specs.PIDNamespace:
		return "pid", "extRootPidNS"
	}
	return "", ""
}

// dumpExternalMounts names every mount CRIU must leave alone: the spec's
// binds, masked files (binds of /dev/null), device nodes bound from the
// host, and on cgroup v1 without a cgroup namespace the container's
// cgroup directories bound from the host.
func (c *Container) dumpExternalMounts(initMounts []initproc.MountinfoEntry) []*rpc.ExtMountMap {
	var out []*rpc.ExtMountMap
	add := func(key, val string) {
		out = append(out, &rpc.ExtMountMap{Key: proto.String(key), Val: proto.String(val)})
	}
	for dest := range externalBindMounts(c.Spec) {
		add(dest, dest)
	}
	mounted := map[string]bool{}
	for _, m := range initMounts {
		mounted[m.MountPoint] = true
	}
	for _, p := range c.Spec.Linux.MaskedPaths {
		fi, err := os.Stat(fmt.Sprintf("/proc/%d/root%s", c.InitPid, p))
		if err == nil && !fi.IsDir() && mounted[p] {
			add(p, "/dev/null")
		}
	}
	// Device nodes that are mounts: bound from the host where mknod was
	// not allowed.
	for _, d := range allDevicePaths(c.Spec) {
		if mounted[d] {
			add(d, d)
		}
	}
	for dest := range c.cgroupBinds() {
		add(dest, dest)
	}
	return out
}

// allDevicePaths are the spec's devices and the ones every container gets.
func allDevicePaths(spec *specs.Spec) []string {
	var out []string
	for _, d := range spec.Linux.Devices {
		out = append(out, filepath.Clean(d.Path))
	}
	for _, d := range initproc.DefaultDevices() {
		out = append(out, d.Path)
	}
	return out
}

// cgroupBinds maps, on a v1 host, each cgroup hierarchy the container sees
// bound from the host (no cgroup namespace of its own) to the host
// directory of its cgroup there; elsewhere the cgroup mounts are CRIU's.
func (c *Container) cgroupBinds() map[string]string {
	out := map[string]string{}
	if cgroups.Mode() == cgroups.Unified || c.cg == nil {
		return out
	}
	var dest string
	cgroupNS := false
	for _, n := range c.Spec.Linux.Namespaces {
		if n.Type == specs.CgroupNamespace {
			cgroupNS = true
		}
	}
	for _, m := range c.Spec.Mounts {
		if m.Type == "cgroup" {
			dest = filepath.Clean(m.Destination)
		}
	}
	if dest == "" || cgroupNS {
		return out
	}
	hostMounts, err := initproc.ReadMountinfo("/proc/self/mountinfo")
	if err != nil {
		return out
	}
	hierarchies, err := initproc.OwnCgroups()
	if err != nil {
		return out
	}
	for _, h := range hierarchies {
		if h.Controllers == "" {
			continue
		}
		host, ok := initproc.HostHierarchy(hostMounts, "cgroup", h.Controllers)
		if !ok {
			continue
		}
		name := strings.TrimPrefix(h.Controllers, "name=")
		out[filepath.Join(dest, name)] = filepath.Join(host.MountPoint, strings.TrimPrefix(c.cg.Path(), host.Root))
	}
	return out
}
