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
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// An idmapped mount shows a bind mount's files with their owners mapped.
// The kernel makes one only for a caller with CAP_SYS_ADMIN where the
// filesystem was mounted (the host), which init in a user namespace of
// its own no longer is. So the shim makes each one, detached
// (open_tree + mount_setattr(MOUNT_ATTR_IDMAP)), and sends init the fds
// after its config; init attaches them with move_mount.

// idmappedMount is a spec mount the shim idmaps.
type idmappedMount struct {
	index int
	// uid and gid map the mount's ids; usernsPath names a user namespace
	// whose mappings to use instead (an "idmap" mount of a container that
	// joins one).
	uid, gid   []specs.LinuxIDMapping
	usernsPath string
	// tree clones the whole tree under the source (rbind); recursive
	// idmaps all of it (ridmap), not just its top.
	tree, recursive bool
}

// idmappedMounts lists the spec's mounts to idmap: those with
// uidMappings/gidMappings or the "idmap"/"ridmap" option. As runc: only
// bind mounts, both mappings or neither (then the container's user
// namespace's), and "idmap" without mappings needs a user namespace.
func idmappedMounts(spec *specs.Spec) ([]idmappedMount, error) {
	var out []idmappedMount
	for i, m := range spec.Mounts {
		idmap, ridmap := slices.Contains(m.Options, "idmap"), slices.Contains(m.Options, "ridmap")
		if !idmap && !ridmap && len(m.UIDMappings)+len(m.GIDMappings) == 0 {
			continue
		}
		invalid := func(format string, args ...any) error {
			return fmt.Errorf("config.json: mounts[%d] (%s): "+format+": %w", append(append([]any{i, m.Destination}, args...), errdefs.ErrInvalidArgument)...)
		}
		flags, _, _ := ParseMountOptions(m.Options)
		if !isBindMount(m) {
			return nil, invalid("idmapped mounts are only supported for bind mounts, not type %q", m.Type)
		}
		im := idmappedMount{index: i, uid: m.UIDMappings, gid: m.GIDMappings, tree: flags&unix.MS_REC != 0, recursive: ridmap}
		switch {
		case len(m.UIDMappings) > 0 && len(m.GIDMappings) > 0:
		case len(m.UIDMappings)+len(m.GIDMappings) > 0:
			return nil, invalid("an idmapped mount needs both uidMappings and gidMappings")
		case len(spec.Linux.UIDMappings) > 0:
			im.uid, im.gid = spec.Linux.UIDMappings, spec.Linux.GIDMappings
		default:
			for _, n := range spec.Linux.Namespaces {
				if n.Type == specs.UserNamespace && n.Path != "" {
					im.usernsPath = n.Path
				}
			}
			if im.usernsPath == "" {
				return nil, invalid("option idmap without uidMappings/gidMappings takes the container's user namespace's, and it has none")
			}
		}
		for _, c := range []struct {
			field  string
			ranges []specs.LinuxIDMapping
		}{{"uidMappings", im.uid}, {"gidMappings", im.gid}} {
			if err := checkIDMappings(fmt.Sprintf("mounts[%d] (%s): %s", i, m.Destination, c.field), c.ranges); err != nil {
				return nil, err
			}
		}
		out = append(out, im)
	}
	return out, nil
}

// openIDMappedMounts makes each of the spec's mounts to idmap detached
// and idmapped, and returns their indexes in spec.Mounts and their fds, in
// the same order; bundle is what relative sources are relative to. On
// error none is left open.
func (r *Runtime) openIDMappedMounts(ctx context.Context, spec *specs.Spec, bundle string) (_, _ []int, retErr error) {
	mounts, err := idmappedMounts(spec)
	if err != nil {
		return nil, nil, err
	}
	var indexes, fds []int
	usernsFds := map[string]int{}
	defer func() {
		for _, fd := range usernsFds {
			unix.Close(fd)
		}
		if retErr != nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
		}
	}()
	for _, im := range mounts {
		m := spec.Mounts[im.index]
		what := fmt.Sprintf("mounts[%d] (%s)", im.index, m.Destination)
		key := im.usernsPath
		if key == "" {
			key = idMapText(im.uid) + "/" + idMapText(im.gid)
		}
		userns, ok := usernsFds[key]
		if !ok {
			var err error
			if im.usernsPath != "" {
				userns, err = unix.Open(im.usernsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			} else {
				userns, err = r.newUserNamespace(ctx, im.uid, im.gid)
			}
			if err != nil {
				return nil, nil, fmt.Errorf("%s: user namespace for the idmapped mount: %w", what, err)
			}
			usernsFds[key] = userns
		}
		src := m.Source
		if !filepath.IsAbs(src) {
			src = filepath.Join(bundle, src)
		}
		fd, err := detachedIDMapped(src, im.tree, im.recursive, userns)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", what, err)
		}
		indexes, fds = append(indexes, im.index), append(fds, fd)
	}
	return indexes, fds, nil
}

// newUserNamespace opens a new user namespace with these mappings, for
// idmapped mounts: the preamble of a helper process makes it, and the
// helper exits as soon as it is mapped (the namespace lives on in the fd).
func (r *Runtime) newUserNamespace(ctx context.Context, uid, gid []specs.LinuxIDMapping) (int, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socketpair: %w", err)
	}
	parent := os.NewFile(uintptr(fds[0]), "userns-parent")
	child := os.NewFile(uintptr(fds[1]), "userns-child")
	defer parent.Close()
	cmd := &exec.Cmd{
		// Never seen by a container: the binary itself will do.
		Path:       "/proc/self/exe",
		Args:       []string{"containerd-shim-mini-v2", "init"},
		Env:        []string{"_MINI_SYNC_FD=3"},
		ExtraFiles: []*os.File{child},
	}
	_, err = r.start(cmd)
	child.Close()
	if err != nil {
		return -1, fmt.Errorf("start user namespace helper: %w", err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	// Closing our end lets the helper go (it exits when it reads EOF).
	boot := namespaces{unshare: unix.CLONE_NEWUSER}
	if err := writeBootstrap(parent, boot.bootstrap()); err != nil {
		return -1, fmt.Errorf("user namespace helper: %w", err)
	}
	line, err := readPreambleLine(parent)
	if err != nil {
		return -1, fmt.Errorf("user namespace helper: %w", err)
	}
	if line != "usermap" {
		return -1, fmt.Errorf("user namespace helper: %w %q", errUnexpectedMessage, line)
	}
	if err := writeIDMaps(pid, uid, gid); err != nil {
		return -1, err
	}
	fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/ns/user", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open the helper's user namespace: %w", err)
	}
	return fd, nil
}

// sendMountFds sends init the idmapped mounts' fds after its config, in
// batches the kernel takes in one message.
func sendMountFds(conn *net.UnixConn, fds []int) error {
	const batch = 200 // SCM_MAX_FD is 253
	for len(fds) > 0 {
		n := min(len(fds), batch)
		if _, _, err := conn.WriteMsgUnix([]byte{0}, unix.UnixRights(fds[:n]...), nil); err != nil {
			return fmt.Errorf("send idmapped mounts: %w", err)
		}
		fds = fds[n:]
	}
	return nil
}

// receiveMountFds is init's side of sendMountFds: the fds of the spec
// mounts at indexes, in order.
func receiveMountFds(conn *os.File, indexes []int) (map[int]int, error) {
	out := make(map[int]int, len(indexes))
	var got []int
	for len(got) < len(indexes) {
		oob := make([]byte, unix.CmsgSpace(253*4))
		_, oobn, _, _, err := unix.Recvmsg(int(conn.Fd()), make([]byte, 1), oob, unix.MSG_CMSG_CLOEXEC)
		if err != nil {
			return nil, fmt.Errorf("receive idmapped mounts: %w", err)
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) == 0 {
			return nil, fmt.Errorf("receive idmapped mounts: no fds came (%v)", err)
		}
		for i := range msgs {
			fds, err := unix.ParseUnixRights(&msgs[i])
			if err != nil {
				return nil, fmt.Errorf("receive idmapped mounts: %w", err)
			}
			got = append(got, fds...)
		}
	}
	if len(got) != len(indexes) {
		return nil, fmt.Errorf("receive idmapped mounts: %d fds for %d mounts", len(got), len(indexes))
	}
	for i, idx := range indexes {
		out[idx] = got[i]
	}
	return out, nil
}

func closeFds(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// takeIDMapOptions takes containerd's uidmap=/gidmap= options (each
// "containerID:hostID:size", ranges joined by commas) out of a rootfs
// component's options. Both or neither must be there.
func takeIDMapOptions(options []string) (rest []string, uid, gid []specs.LinuxIDMapping, err error) {
	for _, o := range options {
		var dst *[]specs.LinuxIDMapping
		var v string
		if s, ok := strings.CutPrefix(o, "uidmap="); ok {
			dst, v = &uid, s
		} else if s, ok := strings.CutPrefix(o, "gidmap="); ok {
			dst, v = &gid, s
		} else {
			rest = append(rest, o)
			continue
		}
		for _, r := range strings.Split(v, ",") {
			var m specs.LinuxIDMapping
			if _, err := fmt.Sscanf(r, "%d:%d:%d", &m.ContainerID, &m.HostID, &m.Size); err != nil {
				return nil, nil, nil, fmt.Errorf("option %q: range %q is not containerID:hostID:size: %w", o, r, errdefs.ErrInvalidArgument)
			}
			*dst = append(*dst, m)
		}
	}
	if (uid == nil) != (gid == nil) {
		return nil, nil, nil, fmt.Errorf("uidmap= and gidmap= options come together: %w", errdefs.ErrInvalidArgument)
	}
	if err := checkIDMappings("uidmap", uid); err != nil {
		return nil, nil, nil, err
	}
	if err := checkIDMappings("gidmap", gid); err != nil {
		return nil, nil, nil, err
	}
	return rest, uid, gid, nil
}

// mountIDMapped mounts a rootfs component whose files must show through
// the mappings: a bind as an idmapped clone of its source; an overlay over
// idmapped clones of its lower layers (attached under a directory beside
// dest for as long as the overlay mount takes; the overlay keeps its own
// references), as containerd does. The upper layer containerd already
// made the mapped root's.
func mountIDMapped(m Mount, dest string, uid, gid []specs.LinuxIDMapping, usernsFunc UsernsFunc) error {
	if usernsFunc == nil {
		return fmt.Errorf("uidmap/gidmap options: no user namespaces here: %w", errdefs.ErrNotImplemented)
	}
	flags, propagation, data := ParseMountOptions(m.Options)
	isBind := m.Type == "bind" || flags&unix.MS_BIND != 0
	if !isBind && m.Type != "overlay" {
		return fmt.Errorf("uidmap/gidmap options on a %s mount: only bind and overlay rootfs mounts can be idmapped: %w", m.Type, errdefs.ErrInvalidArgument)
	}
	userns, err := usernsFunc(uid, gid)
	if err != nil {
		return fmt.Errorf("user namespace for uidmap/gidmap: %w", err)
	}
	defer unix.Close(userns)
	if isBind {
		fd, err := detachedIDMapped(m.Source, flags&unix.MS_REC != 0, true, userns)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return attachBind(dest, flags, propagation, func() error {
			if err := unix.MoveMount(fd, "", unix.AT_FDCWD, dest, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
				return fmt.Errorf("attach idmapped %s: %w", m.Source, err)
			}
			return nil
		})
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dest), ".idmapped-layers-")
	if err != nil {
		return err
	}
	defer func() {
		_ = UnmountRootfs(tmp)
		_ = os.RemoveAll(tmp)
	}()
	opts := strings.Split(data, ",")
	for i, o := range opts {
		dirs, ok := strings.CutPrefix(o, "lowerdir=")
		if !ok {
			continue
		}
		var mapped []string
		for j, dir := range strings.Split(dirs, ":") {
			layer := filepath.Join(tmp, strconv.Itoa(j))
			if err := os.Mkdir(layer, 0o700); err != nil {
				return err
			}
			fd, err := detachedIDMapped(dir, false, false, userns)
			if err != nil {
				return err
			}
			err = unix.MoveMount(fd, "", unix.AT_FDCWD, layer, unix.MOVE_MOUNT_F_EMPTY_PATH)
			unix.Close(fd)
			if err != nil {
				return fmt.Errorf("attach idmapped layer %s: %w", dir, err)
			}
			mapped = append(mapped, layer)
		}
		opts[i] = "lowerdir=" + strings.Join(mapped, ":")
	}
	data = strings.Join(opts, ",")
	if len(data) >= os.Getpagesize() {
		return mountLongOverlay(m.Source, dest, flags, data, propagation)
	}
	if err := unix.Mount(m.Source, dest, "overlay", flags, data); err != nil {
		return fmt.Errorf("overlay over idmapped layers: %w", err)
	}
	return applyPropagation(dest, propagation)
}

// cloneMount makes a detached clone of the mount at source (tree: with
// what is mounted under it), as a bind of it would be.
func cloneMount(source string, tree bool) (int, error) {
	openFlags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC)
	if tree {
		openFlags |= unix.AT_RECURSIVE
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, source, openFlags)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return -1, fmt.Errorf("source %s: %w", source, withClass(errdefs.ErrInvalidArgument, err))
		}
		return -1, fmt.Errorf("open_tree %s: %w", source, err)
	}
	return fd, nil
}

// detachedIDMapped clones source (tree: with what is mounted under it)
// and idmaps the clone (recursive: all of it) with userns.
func detachedIDMapped(source string, tree, recursive bool, userns int) (int, error) {
	fd, err := cloneMount(source, tree)
	if err != nil {
		return -1, err
	}
	setFlags := uint(unix.AT_EMPTY_PATH)
	if recursive {
		setFlags |= unix.AT_RECURSIVE
	}
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns)}
	if err := unix.MountSetattr(fd, "", setFlags, attr); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EPERM) {
			return -1, fmt.Errorf("the filesystem of %s cannot be idmapped on this kernel (mount_setattr MOUNT_ATTR_IDMAP: %v): %w", source, err, errdefs.ErrInvalidArgument)
		}
		return -1, fmt.Errorf("idmap %s: %w", source, err)
	}
	return fd, nil
}

// bindSourceClone is the shim's answer to init's msgMountSource: a
// detached clone of spec mount index's bind source, made with the shim's
// (host root's) access; bundle is what a relative source is relative to.
func bindSourceClone(spec *specs.Spec, bundle string, index int) (int, error) {
	if index < 0 || index >= len(spec.Mounts) {
		return -1, fmt.Errorf("init asked for the source of mounts[%d], which the spec does not have", index)
	}
	m := spec.Mounts[index]
	flags, _, _ := ParseMountOptions(m.Options)
	if m.Type != "bind" && flags&unix.MS_BIND == 0 {
		return -1, fmt.Errorf("init asked for the source of mounts[%d] (%s), which is no bind mount", index, m.Destination)
	}
	src := m.Source
	if !filepath.IsAbs(src) {
		src = filepath.Join(bundle, src)
	}
	fd, err := cloneMount(src, flags&unix.MS_REC != 0)
	if err != nil {
		return -1, fmt.Errorf("mounts[%d] (%s): %w", index, m.Destination, err)
	}
	return fd, nil
}

// requestMountSource is init's side: it asks the shim for spec mount
// index's source and returns the detached clone's fd.
func requestMountSource(conn *os.File, index int) (int, error) {
	if err := writeFrame(conn, message{Type: msgMountSource, Index: index}); err != nil {
		return -1, fmt.Errorf("ask the shim for the source of mounts[%d]: %w", index, err)
	}
	// The fd comes with the answer's first bytes.
	head := make([]byte, 4)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(int(conn.Fd()), head, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("wait for the source of mounts[%d]: %w", index, err)
	}
	fd := -1
	if msgs, perr := unix.ParseSocketControlMessage(oob[:oobn]); perr == nil && len(msgs) > 0 {
		if fds, err := unix.ParseUnixRights(&msgs[0]); err == nil && len(fds) > 0 {
			fd = fds[0]
		}
	}
	var m message
	if err := readFrame(io.MultiReader(bytes.NewReader(head[:n]), conn), &m); err != nil {
		return -1, fmt.Errorf("wait for the source of mounts[%d]: %w", index, err)
	}
	switch {
	case m.Type == msgError:
		return -1, errorFromMessage(m)
	case m.Type != msgMountSourceDone:
		return -1, fmt.Errorf("%w %q while waiting for a mount source", errUnexpectedMessage, m.Type)
	case fd < 0:
		return -1, fmt.Errorf("the source of mounts[%d] came without its fd", index)
	}
	return fd, nil
}
