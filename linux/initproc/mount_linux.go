package initproc

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Mount is one rootfs component containerd sent in CreateTaskRequest.Rootfs.
type Mount struct {
	Type, Source, Target string
	Options              []string
}

// UsernsFunc opens a user namespace with these mappings (the caller
// closes it).
type UsernsFunc func(uid, gid []specs.LinuxIDMapping) (int, error)

// MountRootfs mounts the components, in order, on target. It runs in the
// shim, in the host mount namespace. On failure everything it mounted is
// unmounted again, so the caller never has to clean up half a rootfs.
// Components with uidmap=/gidmap= options (what containerd's snapshotters
// give a container in a user namespace) are idmapped with a user
// namespace from userns.
func MountRootfs(mounts []Mount, target string, userns UsernsFunc) error {
	var mounted []string
	for _, m := range mounts {
		dest, err := componentTarget(target, m.Target)
		if err == nil {
			err = mountComponent(m, dest, userns)
		}
		if err != nil {
			for i := len(mounted) - 1; i >= 0; i-- {
				_ = UnmountRootfs(mounted[i])
			}
			if dest == "" {
				dest = filepath.Join(target, m.Target)
			}
			return fmt.Errorf("mount rootfs %s (type %s) on %s: %w", m.Source, m.Type, dest, err)
		}
		mounted = append(mounted, dest)
	}
	return nil
}

// componentTarget places a component's Target under target without letting
// symlinks inside an already mounted lower component lead out of it.
func componentTarget(target, sub string) (string, error) {
	if sub == "" || sub == "/" {
		return target, nil
	}
	return resolveInRoot(target, sub)
}

func mountComponent(m Mount, dest string, userns UsernsFunc) error {
	opts, uidMap, gidMap, err := takeIDMapOptions(m.Options)
	if err != nil {
		return err
	}
	if uidMap != nil {
		m.Options = opts
		return mountIDMapped(m, dest, uidMap, gidMap, userns)
	}
	fi, err := os.Stat(dest)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("target: %w", withClass(errdefs.ErrNotFound, err))
		}
		return err
	}
	if !fi.IsDir() && m.Type == "overlay" {
		return fmt.Errorf("target is not a directory: %w", errdefs.ErrInvalidArgument)
	}
	flags, propagation, data := ParseMountOptions(m.Options)
	if m.Type == "bind" || flags&unix.MS_BIND != 0 {
		if _, err := os.Stat(m.Source); err != nil {
			return withClass(errdefs.ErrInvalidArgument, err)
		}
		return bindMount(m.Source, dest, flags, propagation)
	}
	if m.Type == "overlay" && len(data) >= os.Getpagesize() {
		return mountLongOverlay(m.Source, dest, flags, data, propagation)
	}
	if err := unix.Mount(m.Source, dest, m.Type, flags, data); err != nil {
		if errors.Is(err, unix.ENOENT) {
			// dest exists, so a missing path is the source or a dir named in data.
			return withClass(errdefs.ErrInvalidArgument, err)
		}
		return err
	}
	return applyPropagation(dest, propagation)
}

// mountLongOverlay works around the one-page limit on mount data: an overlay
// with many layers names each lowerdir through a short /proc/self/fd path.
func mountLongOverlay(source, dest string, flags uintptr, data string, propagation []uintptr) error {
	opts := strings.Split(data, ",")
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for i, o := range opts {
		dirs, ok := strings.CutPrefix(o, "lowerdir=")
		if !ok {
			continue
		}
		var short []string
		for _, dir := range strings.Split(dirs, ":") {
			f, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				return withClass(errdefs.ErrInvalidArgument, err)
			}
			files = append(files, f)
			short = append(short, "/proc/self/fd/"+strconv.Itoa(int(f.Fd())))
		}
		opts[i] = "lowerdir=" + strings.Join(short, ":")
	}
	if err := unix.Mount(source, dest, "overlay", flags, strings.Join(opts, ",")); err != nil {
		return err
	}
	return applyPropagation(dest, propagation)
}

// bindMount binds source on dest and then, because the kernel ignores all but
// MS_BIND|MS_REC on the first call, remounts to apply the other flags.
func bindMount(source, dest string, flags uintptr, propagation []uintptr) error {
	return attachBind(dest, flags, propagation, func() error {
		return unix.Mount(source, dest, "", unix.MS_BIND|(flags&unix.MS_REC), "")
	})
}

// attachBind runs attach, which puts a bind (or a detached clone) on
// dest, then applies flags and propagation to it; on failure dest is
// unmounted again.
func attachBind(dest string, flags uintptr, propagation []uintptr, attach func() error) error {
	if err := attach(); err != nil {
		return err
	}
	if err := remountBind(dest, flags); err != nil {
		_ = unix.Unmount(dest, unix.MNT_DETACH)
		return err
	}
	if err := applyPropagation(dest, propagation); err != nil {
		_ = unix.Unmount(dest, unix.MNT_DETACH)
		return err
	}
	return nil
}

// bindRemountMask is what a bind remount can change.
const bindRemountMask = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC |
	unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME | unix.MS_STRICTATIME | unix.MS_NOSYMFOLLOW

// remountBind applies flags to the bind mount at dest when any are asked
// for. nosuid/nodev/noexec the mount already has are kept: a bind must never
// be more permissive than its source, and in a user namespace they are locked.
func remountBind(dest string, flags uintptr) error {
	want := flags & bindRemountMask
	if want == 0 {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dest, &st); err != nil {
		return fmt.Errorf("statfs: %w", err)
	}
	want |= lockedMountFlags(st.Flags)
	if err := unix.Mount("", dest, "", unix.MS_BIND|unix.MS_REMOUNT|want, ""); err != nil {
		return fmt.Errorf("remount bind with %s: %w", describeFlags(want), err)
	}
	return nil
}

func lockedMountFlags(statfsFlags int64) uintptr {
	var f uintptr
	for _, p := range []struct {
		st int64
		ms uintptr
	}{
		{unix.ST_NOSUID, unix.MS_NOSUID},
		{unix.ST_NODEV, unix.MS_NODEV},
		{unix.ST_NOEXEC, unix.MS_NOEXEC},
	} {
		if statfsFlags&p.st != 0 {
			f |= p.ms
		}
	}
	return f
}

func describeFlags(flags uintptr) string {
	var names []string
	for _, n := range []struct {
		flag uintptr
		name string
	}{
		{unix.MS_RDONLY, "ro"}, {unix.MS_NOSUID, "nosuid"}, {unix.MS_NODEV, "nodev"},
		{unix.MS_NOEXEC, "noexec"}, {unix.MS_NOATIME, "noatime"}, {unix.MS_NODIRATIME, "nodiratime"},
		{unix.MS_RELATIME, "relatime"}, {unix.MS_STRICTATIME, "strictatime"},
	} {
		if flags&n.flag != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, ",")
}

func applyPropagation(dest string, propagation []uintptr) error {
	for _, p := range propagation {
		if err := unix.Mount("", dest, "", p, ""); err != nil {
			return fmt.Errorf("set mount propagation: %w", err)
		}
	}
	return nil
}

// ParseMountOptions turns fstab-style options into mount flags, propagation
// flags (each to be applied by its own mount call) and filesystem data.
func ParseMountOptions(options []string) (flags uintptr, propagation []uintptr, data string) {
	var rest []string
	for _, o := range options {
		if p, ok := propagationFlag(o); ok {
			propagation = append(propagation, p)
			continue
		}
		f, clear, ok := mountFlag(o)
		switch {
		case !ok:
			rest = append(rest, o)
		case clear:
			flags &^= f
		default:
			flags |= f
		}
	}
	return flags, propagation, strings.Join(rest, ",")
}

// flagOption is what one fstab-style flag option does: set flag, or with
// clear, take it away.
type flagOption struct {
	flag  uintptr
	clear bool
}

// flagOptions are the flag options a mount (spec or rootfs) may carry.
var flagOptions = map[string]flagOption{
	"defaults":      {},
	"ro":            {unix.MS_RDONLY, false},
	"rw":            {unix.MS_RDONLY, true},
	"nosuid":        {unix.MS_NOSUID, false},
	"suid":          {unix.MS_NOSUID, true},
	"nodev":         {unix.MS_NODEV, false},
	"dev":           {unix.MS_NODEV, true},
	"noexec":        {unix.MS_NOEXEC, false},
	"exec":          {unix.MS_NOEXEC, true},
	"sync":          {unix.MS_SYNCHRONOUS, false},
	"async":         {unix.MS_SYNCHRONOUS, true},
	"dirsync":       {unix.MS_DIRSYNC, false},
	"remount":       {unix.MS_REMOUNT, false},
	"mand":          {unix.MS_MANDLOCK, false},
	"nomand":        {unix.MS_MANDLOCK, true},
	"noatime":       {unix.MS_NOATIME, false},
	"atime":         {unix.MS_NOATIME, true},
	"nodiratime":    {unix.MS_NODIRATIME, false},
	"diratime":      {unix.MS_NODIRATIME, true},
	"relatime":      {unix.MS_RELATIME, false},
	"norelatime":    {unix.MS_RELATIME, true},
	"strictatime":   {unix.MS_STRICTATIME, false},
	"nostrictatime": {unix.MS_STRICTATIME, true},
	"lazytime":      {unix.MS_LAZYTIME, false},
	"nolazytime":    {unix.MS_LAZYTIME, true},
	"iversion":      {unix.MS_I_VERSION, false},
	"noiversion":    {unix.MS_I_VERSION, true},
	"silent":        {unix.MS_SILENT, false},
	"loud":          {unix.MS_SILENT, true},
	"nosymfollow":   {unix.MS_NOSYMFOLLOW, false},
	"symfollow":     {unix.MS_NOSYMFOLLOW, true},
	"bind":          {unix.MS_BIND, false},
	"rbind":         {unix.MS_BIND | unix.MS_REC, false},
}

// mountFlag maps a flag option; clear is true for the options that undo one.
func mountFlag(o string) (flag uintptr, clear bool, ok bool) {
	f, ok := flagOptions[o]
	return f.flag, f.clear, ok
}

// propagationOptions are the propagation options, each applied by a mount
// call of its own.
var propagationOptions = map[string]uintptr{
	"private":     unix.MS_PRIVATE,
	"rprivate":    unix.MS_PRIVATE | unix.MS_REC,
	"shared":      unix.MS_SHARED,
	"rshared":     unix.MS_SHARED | unix.MS_REC,
	"slave":       unix.MS_SLAVE,
	"rslave":      unix.MS_SLAVE | unix.MS_REC,
	"unbindable":  unix.MS_UNBINDABLE,
	"runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

func propagationFlag(o string) (uintptr, bool) {
	p, ok := propagationOptions[o]
	return p, ok
}

// UnmountRootfs unmounts everything at and below target, deepest first. A
// target that is not mounted, or does not exist, is not an error.
func UnmountRootfs(target string) error {
	real, err := filepath.EvalSymlinks(target)
	if err == nil && real == "/" {
		return fmt.Errorf("unmount rootfs %s: refusing to unmount the host root: %w", target, errdefs.ErrInvalidArgument)
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("unmount rootfs %s: %w", target, err)
	}
	// Mounts stack, so one pass may uncover more; the bound only guards
	// against a mount that keeps coming back.
	for pass := 0; pass < 64; pass++ {
		points, err := mountPointsUnder(real)
		if err != nil {
			return fmt.Errorf("unmount rootfs %s: %w", target, err)
		}
		if len(points) == 0 {
			return nil
		}
		for _, p := range points {
			if err := unmountOne(p); err != nil {
				return fmt.Errorf("unmount rootfs %s: %w", target, err)
			}
		}
	}
	return fmt.Errorf("unmount rootfs %s: mounts keep reappearing: %w", target, errdefs.ErrFailedPrecondition)
}

func unmountOne(p string) error {
	err := unix.Unmount(p, unix.UMOUNT_NOFOLLOW)
	if errors.Is(err, unix.EBUSY) {
		err = unix.Unmount(p, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
	}
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("unmount %s: %w", p, err)
}

// mountPointsUnder lists the mount points at or below dir, deepest first and,
// at one path, the most recent mount first.
func mountPointsUnder(dir string) ([]string, error) {
	entries, err := ReadMountinfo("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	type point struct {
		path  string
		order int
	}
	var points []point
	for i, e := range entries {
		if e.MountPoint == dir || strings.HasPrefix(e.MountPoint, dir+"/") {
			points = append(points, point{e.MountPoint, i})
		}
	}
	sort.SliceStable(points, func(a, b int) bool {
		da, db := strings.Count(points[a].path, "/"), strings.Count(points[b].path, "/")
		if da != db {
			return da > db
		}
		return points[a].order > points[b].order
	})
	out := make([]string, len(points))
	for i, p := range points {
		out[i] = p.path
	}
	return out, nil
}

// MountinfoEntry is the part of a /proc/<pid>/mountinfo line the shim and
// its tests use.
type MountinfoEntry struct {
	// ID is the mount's id, as fdinfo's mnt_id names it.
	ID                                             int
	Root, MountPoint, FSType, Source, SuperOptions string
}

// ReadMountinfo parses a mountinfo file (/proc/self/mountinfo).
func ReadMountinfo(path string) ([]MountinfoEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []MountinfoEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(fields); i++ {
			if fields[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || len(fields) < sep+4 {
			return nil, fmt.Errorf("%s: malformed line %q", path, sc.Text())
		}
		id, _ := strconv.Atoi(fields[0])
		out = append(out, MountinfoEntry{
			ID:           id,
			Root:         unescapeMountinfo(fields[3]),
			MountPoint:   unescapeMountinfo(fields[4]),
			FSType:       fields[sep+1],
			Source:       unescapeMountinfo(fields[sep+2]),
			SuperOptions: fields[sep+3],
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return out, nil
}

// unescapeMountinfo undoes the kernel's octal escaping of space, tab,
// newline and backslash.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// classedError keeps err's text but also matches class with errors.Is, so a
// message can read exactly like the syscall's while carrying an errdefs class.
type classedError struct {
	class error
	err   error
}

func (e *classedError) Error() string   { return e.err.Error() }
func (e *classedError) Unwrap() []error { return []error{e.class, e.err} }

func withClass(class, err error) error { return &classedError{class: class, err: err} }

// MountOptionNames are the options a spec mount may carry, sorted; the
// recursive and idmap ones only where the kernel has mount_setattr(2)
// (setattr).
func MountOptionNames(setattr bool) []string {
	names := slices.Collect(maps.Keys(flagOptions))
	names = slices.AppendSeq(names, maps.Keys(propagationOptions))
	if setattr {
		names = slices.AppendSeq(names, maps.Keys(recursiveOptions))
		names = append(names, "idmap", "ridmap")
	}
	names = append(names, "tmpcopyup")
	slices.Sort(names)
	return names
}
