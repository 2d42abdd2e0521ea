package initproc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// rootfsOptions are what setupRootfs takes besides the spec.
type rootfsOptions struct {
	// MountFds are detached mounts the shim made (idmapped ones), by
	// index of the spec mount they are; each is attached where its mount
	// goes.
	MountFds map[int]int
	// MountSource asks the shim for a detached clone of spec mount
	// index's bind source, for a source this process cannot reach (as
	// root of a user namespace of its own); nil where there is no shim.
	MountSource func(index int) (int, error)
	// NoPivotRoot moves the root instead of pivot_root (runc's option).
	NoPivotRoot bool
	// BeforePivot, when set, runs once every mount is in place and before
	// pivot_root, with the host's filesystem still in view: the hooks'
	// moment (prestart, createRuntime and createContainer).
	BeforePivot func() error
}

// setupRootfs builds the container's filesystem view and pivots into it. It
// runs in init, inside the container's fresh mount namespace, before any user
// code. rootfs is the absolute host path of the root.
//
// spec.Linux.Sysctl is applied here, after the pivot and before the
// read-only paths, because the usual /proc/sys read-only path would make a
// later write fail.
func setupRootfs(spec *ContainerSpec, rootfs string, opts rootfsOptions) error {
	if spec == nil {
		return fmt.Errorf("setup rootfs: no spec: %w", errdefs.ErrInvalidArgument)
	}
	lx := &spec.Linux
	root, err := filepath.EvalSymlinks(rootfs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("container rootfs %s: %w", rootfs, withClass(errdefs.ErrNotFound, err))
		}
		return fmt.Errorf("container rootfs %s: %w", rootfs, err)
	}
	rootProp, err := rootPropagation(lx.RootfsPropagation)
	if err != nil {
		return err
	}
	// Files we create (mount points, device nodes) get predictable modes.
	defer unix.Umask(unix.Umask(0o022))

	// rslave by default, as runc: nothing mounted here reaches the host, yet
	// host unmounts still reach us and no host mount is kept busy by the
	// container. A rootfsPropagation is applied as it is, as runc does:
	// rshared keeps the host's peer groups, so that a bind of a shared host
	// mount made rshared (Kubernetes' Bidirectional) is a peer of it.
	before := uintptr(unix.MS_SLAVE | unix.MS_REC)
	if rootProp != 0 && rootProp&unix.MS_UNBINDABLE == 0 {
		// Unbindable only after the pivot: bind mounts of the spec are
		// made from sources under / first.
		before = rootProp
	}
	if err := unix.Mount("", "/", "", before, ""); err != nil {
		return fmt.Errorf("make / %s before setting up the rootfs: %w", propagationName(before), err)
	}
	// What is mounted on the rootfs must not reach the host even when /
	// stays shared: the mount holding the rootfs becomes private, so the
	// bind below and everything under it start in no peer group (pivot_root
	// also refuses a shared parent).
	if err := makeParentMountPrivate(root); err != nil {
		return err
	}
	// pivot_root needs the new root to be a mount point.
	if err := unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind rootfs %s onto itself: %w", root, err)
	}

	cgroupNS := slices.ContainsFunc(lx.Namespaces, func(n specs.LinuxNamespace) bool {
		return n.Type == specs.CgroupNamespace
	})
	devFromHost, ptsMounted := false, false
	for i, m := range spec.Mounts {
		fd, idmapped := opts.MountFds[i]
		if !idmapped {
			fd = -1
		}
		var source func() (int, error)
		if opts.MountSource != nil {
			source = func() (int, error) { return opts.MountSource(i) }
		}
		if err := mountInContainer(root, m, fd, source, cgroupNS, lx.CgroupsPath, lx.MountLabel); err != nil {
			return fmt.Errorf("mount %q on %q in container: %w", m.Source, m.Destination, err)
		}
		switch path.Clean("/" + m.Destination) {
		case "/dev":
			devFromHost = IsBindMount(m)
		case "/dev/pts":
			ptsMounted = m.Type == "devpts"
		}
	}
	if !devFromHost {
		if err := setupDev(root, lx.Devices, ptsMounted); err != nil {
			return err
		}
	}
	if opts.BeforePivot != nil {
		if err := opts.BeforePivot(); err != nil {
			return err
		}
	}
	if opts.NoPivotRoot {
		if err := moveRootInto(root); err != nil {
			return fmt.Errorf("move rootfs %s onto / (no pivot_root): %w", root, err)
		}
	} else if err := pivotInto(root); err != nil {
		return fmt.Errorf("pivot_root into %s: %w", root, err)
	}
	if rootProp != 0 && rootProp&unix.MS_PRIVATE == 0 {
		// The new root came from a private mount: give it the asked
		// propagation too.
		if err := unix.Mount("", "/", "", rootProp, ""); err != nil {
			return fmt.Errorf("set rootfs propagation %q: %w", lx.RootfsPropagation, err)
		}
	}
	if err := applySysctl(lx.Sysctl); err != nil {
		return err
	}
	for _, p := range lx.ReadonlyPaths {
		if err := readonlyPath(p); err != nil {
			return fmt.Errorf("make %s read-only in container: %w", p, err)
		}
	}
	for _, p := range lx.MaskedPaths {
		if err := maskPath(p, lx.MountLabel); err != nil {
			return fmt.Errorf("mask %s in container: %w", p, err)
		}
	}
	if spec.Root != nil && spec.Root.Readonly {
		if err := remountBind("/", unix.MS_RDONLY); err != nil {
			return fmt.Errorf("make container rootfs read-only: %w", err)
		}
	}
	return nil
}

// makeParentMountPrivate makes the mount that holds path private (not
// recursively), walking up from path to the mount point it lies on.
func makeParentMountPrivate(path string) error {
	for p := path; ; p = filepath.Dir(p) {
		err := unix.Mount("", p, "", unix.MS_PRIVATE, "")
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EINVAL) || p == "/" {
			return fmt.Errorf("make the mount holding rootfs %s private (at %s): %w", path, p, err)
		}
	}
}

func rootPropagation(name string) (uintptr, error) {
	if name == "" {
		return 0, nil
	}
	if p, ok := propagationFlag(name); ok {
		return p, nil
	}
	return 0, fmt.Errorf("linux.rootfsPropagation %q is not a propagation mode: %w", name, errdefs.ErrInvalidArgument)
}

func propagationName(p uintptr) string {
	for _, n := range []string{"private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable", "runbindable"} {
		if f, _ := propagationFlag(n); f == p {
			return n
		}
	}
	return "0x" + strconv.FormatUint(uint64(p), 16)
}

// IsBindMount says whether m binds a path rather than mounting a filesystem.
func IsBindMount(m specs.Mount) bool {
	if m.Type == "bind" {
		return true
	}
	flags, _, _ := ParseMountOptions(m.Options)
	return flags&unix.MS_BIND != 0
}

// pivotInto makes root the root of the mount namespace and drops the old one.
// pivot_root(".", ".") stacks the old root on top of the new one, so no
// directory for it is needed inside the container.
func pivotInto(root string) error {
	oldRoot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open old root: %w", err)
	}
	defer unix.Close(oldRoot)
	newRoot, err := unix.Open(root, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open new root: %w", err)
	}
	defer unix.Close(newRoot)
	if err := unix.Fchdir(newRoot); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Fchdir(oldRoot); err != nil {
		return err
	}
	// If the old root is shared with the host, detaching it must not
	// propagate an unmount there.
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make old root rslave: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	return unix.Chdir("/")
}

// moveRootInto makes root the root directory by moving its mount onto /
// and chrooting into it, for a root pivot_root refuses (one on the
// initramfs). Unlike a pivot, the old root stays mounted underneath: every
// mount of the host that neither holds the rootfs nor lies in it is
// detached first (or, where it will not go, hidden under an empty tmpfs),
// as runc does, so a chroot escape finds little.
func moveRootInto(root string) error {
	mounts, err := ReadMountinfo("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var others []string
	for _, m := range mounts {
		p := m.MountPoint
		if p == root || strings.HasPrefix(p, root+"/") || p == "/" || strings.HasPrefix(root, p+"/") {
			continue
		}
		others = append(others, p)
	}
	// Deepest first: a mount comes off before the one it sits on.
	slices.SortFunc(others, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	for _, p := range others {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			if err := unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0"); err != nil {
				return fmt.Errorf("detach or hide host mount %s: %w", p, err)
			}
		}
	}
	if err := unix.Chdir(root); err != nil {
		return err
	}
	if err := unix.Mount(root, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move mount: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	return unix.Chdir("/")
}

// readonlyPath runs after the pivot, so paths resolve inside the container.
func readonlyPath(p string) error {
	if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	return remountBind(p, unix.MS_RDONLY)
}

func maskPath(p, mountLabel string) error {
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if fi.IsDir() {
		return unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY, withMountLabel("", mountLabel))
	}
	return unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
}

// mountInContainer mounts one spec mount under root. The caller names the
// mount in the error. mountLabel goes to the filesystems that take an
// SELinux context (not binds, proc, sysfs, cgroup or mqueue, as runc).
// A bind mount the shim made detached and idmapped comes as fd (else -1);
// source, when set, gets one from the shim for a bind source this process
// may not reach.
func mountInContainer(root string, m specs.Mount, fd int, source func() (int, error), cgroupNS bool, cgroupPath, mountLabel string) error {
	opts, attrs, err := splitRecursiveOptions(m.Options)
	if err != nil {
		return err
	}
	flags, propagation, data := ParseMountOptions(opts)
	dest := path.Clean("/" + m.Destination)

	if m.Type == "bind" || flags&unix.MS_BIND != 0 {
		src := m.Source
		if !filepath.IsAbs(src) {
			// Relative sources are relative to the bundle, init's cwd.
			if src, err = filepath.Abs(src); err != nil {
				return err
			}
		}
		var dir bool
		if fd < 0 {
			var fi fs.FileInfo
			if fi, err = os.Stat(src); err == nil {
				dir = fi.IsDir()
			} else if errors.Is(err, fs.ErrPermission) && source != nil {
				// Root of a user namespace of its own is not the
				// host's: the shim clones the source, as runc does.
				fd, err = source()
			}
		}
		if err == nil && fd >= 0 {
			var st unix.Stat_t
			if err = unix.Fstat(fd, &st); err == nil {
				dir = st.Mode&unix.S_IFMT == unix.S_IFDIR
			}
		}
		if err != nil {
			return withClass(errdefs.ErrInvalidArgument, err)
		}
		if err := checkProcDestination(root, dest, src); err != nil {
			return err
		}
		return mountAt(root, dest, dir, func(target string) error {
			if fd >= 0 {
				defer unix.Close(fd)
				// target is a /proc/self/fd link: followed, it is the
				// verified mount point.
				return unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_SYMLINKS)
			}
			return unix.Mount(src, target, "", unix.MS_BIND|(flags&unix.MS_REC), "")
		}, flags, propagation, attrs)
	}
	if m.Type != "proc" {
		if err := checkProcDestination(root, dest, ""); err != nil {
			return err
		}
	}
	switch m.Type {
	case "cgroup":
		return mountCgroup(root, dest, flags, cgroupNS, cgroupPath)
	case "sysfs", "mqueue":
		err := mountAt(root, dest, true, func(target string) error {
			return unix.Mount(m.Source, target, m.Type, flags, data)
		}, 0, propagation, attrs)
		if !errors.Is(err, unix.EPERM) {
			return err
		}
		// Without a network (sysfs) or IPC (mqueue) namespace of our own the
		// kernel refuses a fresh instance; show the host's, as runc does.
		host := map[string]string{"sysfs": "/sys", "mqueue": "/dev/mqueue"}[m.Type]
		return mountAt(root, dest, true, func(target string) error {
			return unix.Mount(host, target, "", unix.MS_BIND|unix.MS_REC, "")
		}, flags, propagation, attrs)
	}
	if m.Type != "proc" {
		data = withMountLabel(data, mountLabel)
	}
	return mountAt(root, dest, true, func(target string) error {
		return unix.Mount(m.Source, target, m.Type, flags, data)
	}, 0, propagation, attrs)
}

// mountAt creates dest inside root when missing, runs mount on a verified
// handle to it, then applies bind remount flags, propagation and recursive
// attributes to the new mount.
func mountAt(root, dest string, dir bool, mount func(target string) error, bindFlags uintptr, propagation []uintptr, attrs *unix.MountAttr) error {
	hostPath, err := CreateMountPoint(root, dest, dir)
	if err != nil {
		return err
	}
	if err := withVerifiedPath(hostPath, mount); err != nil {
		return err
	}
	// Most mounts (proc, tmpfs, devpts, ...) have nothing more to apply;
	// skip the second open and check of the path for them.
	if bindFlags&bindRemountMask == 0 && len(propagation) == 0 && attrs == nil {
		return nil
	}
	return withVerifiedPath(hostPath, func(target string) error {
		if err := remountBind(target, bindFlags); err != nil {
			return err
		}
		if err := applyPropagation(target, propagation); err != nil {
			return err
		}
		if attrs != nil {
			if err := unix.MountSetattr(unix.AT_FDCWD, target, unix.AT_RECURSIVE, attrs); err != nil {
				return fmt.Errorf("mount_setattr: %w", err)
			}
		}
		return nil
	})
}

// CreateMountPoint resolves dest inside root and creates it (a directory, or
// an empty file for file binds) when it does not exist yet.
func CreateMountPoint(root, dest string, dir bool) (string, error) {
	p, err := resolveInRoot(root, dest)
	if err != nil {
		return "", err
	}
	if _, err := os.Lstat(p); err == nil {
		return p, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if dir {
		return p, os.MkdirAll(p, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return "", err
	}
	return p, f.Close()
}

// withVerifiedPath opens hostPath without following a final symlink, checks
// the kernel sees the file at exactly that path (so no component was swapped
// for a symlink since it was resolved), and hands fn a /proc/self/fd path to
// it so that the mount lands on that very file.
func withVerifiedPath(hostPath string, fn func(target string) error) error {
	f, err := os.OpenFile(hostPath, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	target := "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
	got, err := os.Readlink(target)
	if err != nil {
		return err
	}
	if got != hostPath {
		return fmt.Errorf("mount point %s resolves to %s: %w", hostPath, got, errdefs.ErrInvalidArgument)
	}
	return fn(target)
}

// resolveInRoot resolves unsafePath as if root were "/": ".." stops at root
// and symlinks, absolute ones included, are followed inside root. Missing
// components are kept as named.
func resolveInRoot(root, unsafePath string) (string, error) {
	const maxLinks = 255
	resolved := "/"
	remaining := unsafePath
	links := 0
	for remaining != "" {
		var part string
		part, remaining, _ = strings.Cut(remaining, "/")
		switch part {
		case "", ".":
			continue
		case "..":
			resolved = path.Dir(resolved)
			continue
		}
		next := path.Join(resolved, part)
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
				resolved = next
				continue
			}
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			resolved = next
			continue
		}
		if links++; links > maxLinks {
			return "", &fs.PathError{Op: "resolve", Path: unsafePath, Err: unix.ELOOP}
		}
		link, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if path.IsAbs(link) {
			resolved = "/"
		}
		remaining = link + "/" + remaining
	}
	return filepath.Join(root, resolved), nil
}

// checkProcDestination refuses non-proc mounts over /proc or inside it, the
// destination judged after resolving symlinks. bindSource, when set, may be
// a procfs to be bound onto /proc itself.
func checkProcDestination(root, dest, bindSource string) error {
	p, err := resolveInRoot(root, dest)
	if err != nil {
		return err
	}
	rel := "/" + strings.TrimPrefix(strings.TrimPrefix(p, root), "/")
	switch {
	case rel == "/proc":
		var st unix.Statfs_t
		if bindSource != "" && unix.Statfs(bindSource, &st) == nil && st.Type == unix.PROC_SUPER_MAGIC {
			return nil
		}
	case strings.HasPrefix(rel, "/proc/"):
		// What tools like lxcfs replace; anything else mounted over procfs
		// could hide files LSMs and the kernel's protections rely on.
		allowed := []string{
			"/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat", "/proc/swaps",
			"/proc/uptime", "/proc/loadavg", "/proc/slabinfo", "/proc/net/dev", "/proc/sys/kernel/ns_last_pid",
		}
		if slices.Contains(allowed, rel) {
			return nil
		}
	default:
		return nil
	}
	return fmt.Errorf("%s resolves to %s: only procfs may be mounted there: %w", dest, rel, errdefs.ErrInvalidArgument)
}

// splitRecursiveOptions takes out the mount_setattr(2) style options (rro,
// rnosuid, ...) that apply to a whole mount tree, and options that only
// matter to other runtimes.
func splitRecursiveOptions(options []string) ([]string, *unix.MountAttr, error) {
	var kept []string
	var attr *unix.MountAttr
	for _, o := range options {
		set, clr, ok := recursiveAttr(o)
		switch {
		case ok:
			if attr == nil {
				attr = &unix.MountAttr{}
			}
			attr.Attr_set = attr.Attr_set&^clr | set
			attr.Attr_clr = attr.Attr_clr&^set | clr
		case o == "tmpcopyup":
			// A copy-up hint for runc's tmpfs; a fresh tmpfs is fine.
		case o == "idmap" || o == "ridmap":
			// The shim made the mount idmapped (see idmappedMounts).
		case strings.HasPrefix(o, "idmap=") || strings.HasPrefix(o, "ridmap="):
			// crun's form with the mappings in the option.
			return nil, nil, fmt.Errorf("mount option %q (mappings go in the mount's uidMappings/gidMappings): %w", o, errdefs.ErrNotImplemented)
		default:
			kept = append(kept, o)
		}
	}
	return kept, attr, nil
}

// recursiveAttribute is what a mount_setattr(2) style option sets and
// clears on a whole mount tree.
type recursiveAttribute struct{ set, clr uint64 }

// recursiveOptions are the options applied with mount_setattr(AT_RECURSIVE).
var recursiveOptions = map[string]recursiveAttribute{
	"rro":          {unix.MOUNT_ATTR_RDONLY, 0},
	"rrw":          {0, unix.MOUNT_ATTR_RDONLY},
	"rnosuid":      {unix.MOUNT_ATTR_NOSUID, 0},
	"rsuid":        {0, unix.MOUNT_ATTR_NOSUID},
	"rnodev":       {unix.MOUNT_ATTR_NODEV, 0},
	"rdev":         {0, unix.MOUNT_ATTR_NODEV},
	"rnoexec":      {unix.MOUNT_ATTR_NOEXEC, 0},
	"rexec":        {0, unix.MOUNT_ATTR_NOEXEC},
	"rnodiratime":  {unix.MOUNT_ATTR_NODIRATIME, 0},
	"rdiratime":    {0, unix.MOUNT_ATTR_NODIRATIME},
	"rnoatime":     {unix.MOUNT_ATTR_NOATIME, unix.MOUNT_ATTR__ATIME},
	"rstrictatime": {unix.MOUNT_ATTR_STRICTATIME, unix.MOUNT_ATTR__ATIME},
	"rrelatime":    {unix.MOUNT_ATTR_RELATIME, unix.MOUNT_ATTR__ATIME},
	"rnosymfollow": {unix.MOUNT_ATTR_NOSYMFOLLOW, 0},
	"rsymfollow":   {0, unix.MOUNT_ATTR_NOSYMFOLLOW},
}

func recursiveAttr(o string) (set, clr uint64, ok bool) {
	a, ok := recursiveOptions[o]
	return a.set, a.clr, ok
}

// mountCgroup gives the container a cgroup filesystem at dest. On a unified
// host that is cgroup2. On a v1 or hybrid host it is a tmpfs holding one
// mount per hierarchy: fresh ones when the container has a cgroup namespace
// (the kernel then shows only its subtree), else binds of the container's own
// cgroup directories from the host. cgroupPath is the container's cgroup:
// init may still be on its way into it while the rootfs is set up, so its
// own /proc/self/cgroup is not to be trusted for the path.
func mountCgroup(root, dest string, flags uintptr, cgroupNS bool, cgroupPath string) error {
	flags &^= unix.MS_BIND | unix.MS_REC
	// On v2 a fresh mount, also without a cgroup namespace, where it shows
	// the whole tree the container shares, as runc's does (tools run with
	// the host's cgroup namespace read it so).
	if cgroups.Mode() == cgroups.Unified {
		err := mountAt(root, dest, true, func(target string) error {
			return unix.Mount("cgroup2", target, "cgroup2", flags, "")
		}, 0, nil, nil)
		if !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EBUSY) {
			return err
		}
		// A user namespace gets no fresh cgroup2 without a cgroup
		// namespace it owns: show the host's tree, as runc does.
		return mountAt(root, dest, true, func(target string) error {
			return unix.Mount(CgroupRoot, target, "", unix.MS_BIND|unix.MS_REC, "")
		}, flags, nil, nil)
	}
	hostMounts, err := ReadMountinfo("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	hierarchies, err := OwnCgroups()
	if err != nil {
		return err
	}
	err = mountAt(root, dest, true, func(target string) error {
		return unix.Mount("tmpfs", target, "tmpfs", flags&^unix.MS_RDONLY, "mode=755")
	}, 0, nil, nil)
	if err != nil {
		return fmt.Errorf("cgroup tmpfs: %w", err)
	}
	// The tmpfs is fresh and ours: nothing in it can be a symlink yet.
	base, err := resolveInRoot(root, dest)
	if err != nil {
		return err
	}
	for _, h := range hierarchies {
		if cgroupPath != "" && !cgroupNS {
			if h.Controllers == "" {
				// The controller-less v2 tree of a hybrid host holds no
				// cgroup of the container's to bind.
				continue
			}
			h.Path = cgroupPath
		}
		if err := mountHierarchy(base, h, hostMounts, flags, cgroupNS); err != nil {
			return err
		}
	}
	if flags&unix.MS_RDONLY != 0 {
		return withVerifiedPath(base, func(target string) error {
			return remountBind(target, unix.MS_RDONLY|flags&bindRemountMask)
		})
	}
	return nil
}

// CgroupHierarchy is one line of /proc/self/cgroup.
type CgroupHierarchy struct {
	Controllers string // "cpu,cpuacct", "name=systemd", "" for cgroup2
	Path        string
}

// OwnCgroups are this process's cgroups.
func OwnCgroups() ([]CgroupHierarchy, error) { return CgroupsOf("self") }

// CgroupsOf is /proc/<pid>/cgroup ("self" for this process).
func CgroupsOf(pid string) ([]CgroupHierarchy, error) {
	data, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		return nil, err
	}
	var out []CgroupHierarchy
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		out = append(out, CgroupHierarchy{Controllers: parts[1], Path: parts[2]})
	}
	return out, nil
}

func mountHierarchy(base string, h CgroupHierarchy, hostMounts []MountinfoEntry, flags uintptr, cgroupNS bool) error {
	name := strings.TrimPrefix(h.Controllers, "name=")
	fsType, data := "cgroup", h.Controllers
	if h.Controllers == "" {
		name, fsType, data = "unified", "cgroup2", ""
	}
	host, ok := HostHierarchy(hostMounts, fsType, h.Controllers)
	if !ok {
		// Not mounted on the host (the unused v2 hierarchy of a v1 host).
		return nil
	}
	dir := filepath.Join(base, name)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	var err error
	if cgroupNS {
		err = unix.Mount("cgroup", dir, fsType, flags, data)
	} else {
		src := filepath.Join(host.MountPoint, strings.TrimPrefix(h.Path, host.Root))
		if err = unix.Mount(src, dir, "", unix.MS_BIND|unix.MS_REC, ""); err == nil {
			err = remountBind(dir, flags&bindRemountMask)
		}
	}
	if err != nil {
		return fmt.Errorf("cgroup hierarchy %s: %w", name, err)
	}
	if strings.Contains(name, ",") {
		for _, c := range strings.Split(name, ",") {
			if err := os.Symlink(name, filepath.Join(base, c)); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
		}
	}
	return nil
}

// HostHierarchy finds the host's mount of the hierarchy with exactly these
// controllers.
func HostHierarchy(mounts []MountinfoEntry, fsType, controllers string) (MountinfoEntry, bool) {
	want := strings.Split(controllers, ",")
	slices.Sort(want)
	for _, m := range mounts {
		if m.FSType != fsType {
			continue
		}
		if fsType == "cgroup2" {
			return m, true
		}
		var have []string
		for _, o := range strings.Split(m.SuperOptions, ",") {
			if o == "rw" || o == "ro" || (strings.Contains(o, "=") && !strings.HasPrefix(o, "name=")) ||
				o == "xattr" || o == "noprefix" || o == "clone_children" || o == "cpuset_v2_mode" || o == "favordynmods" {
				continue
			}
			have = append(have, o)
		}
		slices.Sort(have)
		if slices.Equal(have, want) {
			return m, true
		}
	}
	return MountinfoEntry{}, false
}

// CgroupRoot is where the host mounts its cgroup hierarchies: the v1
// controllers' directories on a v1 or hybrid host, the unified tree on v2.
const CgroupRoot = "/sys/fs/cgroup"
