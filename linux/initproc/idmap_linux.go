package initproc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

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
	if err := CheckIDMappings("uidmap", uid); err != nil {
		return nil, nil, nil, err
	}
	if err := CheckIDMappings("gidmap", gid); err != nil {
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
		fd, err := DetachedIDMapped(m.Source, flags&unix.MS_REC != 0, true, userns)
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
			fd, err := DetachedIDMapped(dir, false, false, userns)
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

// CloneMount makes a detached clone of the mount at source (tree: with
// what is mounted under it), as a bind of it would be.
func CloneMount(source string, tree bool) (int, error) {
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

// DetachedIDMapped clones source (tree: with what is mounted under it)
// and idmaps the clone (recursive: all of it) with userns.
func DetachedIDMapped(source string, tree, recursive bool, userns int) (int, error) {
	fd, err := CloneMount(source, tree)
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

// requestMountSource is init's side: it asks the shim for spec mount
// index's source and returns the detached clone's fd.
func requestMountSource(conn *os.File, index int) (int, error) {
	if err := WriteFrame(conn, Message{Type: MsgMountSource, Index: index}); err != nil {
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
	var m Message
	if err := ReadFrame(io.MultiReader(bytes.NewReader(head[:n]), conn), &m); err != nil {
		return -1, fmt.Errorf("wait for the source of mounts[%d]: %w", index, err)
	}
	switch {
	case m.Type == MsgError:
		return -1, ErrorFromMessage(m)
	case m.Type != MsgMountSourceDone:
		return -1, fmt.Errorf("%w %q while waiting for a mount source", ErrUnexpectedMessage, m.Type)
	case fd < 0:
		return -1, fmt.Errorf("the source of mounts[%d] came without its fd", index)
	}
	return fd, nil
}

// maxIDMapLines is the kernel's limit of lines in a uid_map or gid_map.
const maxIDMapLines = 340

// CheckIDMappings refuses what the kernel would: an empty range, one past
// the 32-bit id space, ranges that overlap on either side, too many lines.
func CheckIDMappings(field string, ranges []specs.LinuxIDMapping) error {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("config.json: %s: "+format+": %w", append(append([]any{field}, args...), errdefs.ErrInvalidArgument)...)
	}
	if len(ranges) > maxIDMapLines {
		return invalid("%d ranges, more than the kernel's %d", len(ranges), maxIDMapLines)
	}
	for i, m := range ranges {
		switch {
		case m.Size == 0:
			return invalid("[%d] has size 0", i)
		case uint64(m.ContainerID)+uint64(m.Size) > math.MaxUint32+1:
			return invalid("[%d] (containerID %d, size %d) goes past the last id", i, m.ContainerID, m.Size)
		case uint64(m.HostID)+uint64(m.Size) > math.MaxUint32+1:
			return invalid("[%d] (hostID %d, size %d) goes past the last id", i, m.HostID, m.Size)
		}
		for j, o := range ranges[:i] {
			if overlaps(m.ContainerID, m.Size, o.ContainerID, o.Size) {
				return invalid("[%d] and [%d] overlap in containerID", j, i)
			}
			if overlaps(m.HostID, m.Size, o.HostID, o.Size) {
				return invalid("[%d] and [%d] overlap in hostID", j, i)
			}
		}
	}
	return nil
}

func overlaps(a, asize, b, bsize uint32) bool {
	return uint64(a) < uint64(b)+uint64(bsize) && uint64(b) < uint64(a)+uint64(asize)
}
