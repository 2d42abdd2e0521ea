package linux

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"

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
		if m.Type != "bind" && flags&unix.MS_BIND == 0 {
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

// openIDMappedMounts makes each mount detached and idmapped and returns
// their fds, in order; bundle is what relative sources are relative to.
// On error none is left open.
func (r *Runtime) openIDMappedMounts(ctx context.Context, spec *specs.Spec, bundle string, mounts []idmappedMount) (_ []int, retErr error) {
	var fds []int
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
			if userns, err = r.userNamespaceFd(ctx, im); err != nil {
				return nil, fmt.Errorf("%s: user namespace for the idmapped mount: %w", what, err)
			}
			usernsFds[key] = userns
		}
		src := m.Source
		if !filepath.IsAbs(src) {
			src = filepath.Join(bundle, src)
		}
		openFlags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC)
		if im.tree {
			openFlags |= unix.AT_RECURSIVE
		}
		fd, err := unix.OpenTree(unix.AT_FDCWD, src, openFlags)
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				return nil, fmt.Errorf("%s: source %s: %w", what, err, errdefs.ErrInvalidArgument)
			}
			return nil, fmt.Errorf("%s: open_tree %s: %w", what, src, err)
		}
		fds = append(fds, fd)
		setFlags := uint(unix.AT_EMPTY_PATH)
		if im.recursive {
			setFlags |= unix.AT_RECURSIVE
		}
		attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns)}
		if err := unix.MountSetattr(fd, "", setFlags, attr); err != nil {
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EPERM) {
				return nil, fmt.Errorf("%s: the filesystem of %s cannot be idmapped on this kernel (mount_setattr MOUNT_ATTR_IDMAP: %v): %w", what, src, err, errdefs.ErrInvalidArgument)
			}
			return nil, fmt.Errorf("%s: idmap %s: %w", what, src, err)
		}
	}
	return fds, nil
}

// userNamespaceFd opens the user namespace an idmapped mount maps its ids
// with: the one named by path, or a new one with its mappings, made by
// the preamble of a helper process that exits as soon as it is mapped
// (the namespace lives on in the fd).
func (r *Runtime) userNamespaceFd(ctx context.Context, im idmappedMount) (int, error) {
	if im.usernsPath != "" {
		return unix.Open(im.usernsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
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
	if dl, ok := ctx.Deadline(); ok {
		_ = parent.SetDeadline(dl)
	}
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
	if err := writeIDMaps(pid, im.uid, im.gid); err != nil {
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
