package linux

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/containerd/errdefs"
	"github.com/minishim/containerd-shim-mini-v2/linux/initproc"
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
		flags, _, _ := initproc.ParseMountOptions(m.Options)
		if !initproc.IsBindMount(m) {
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
			if err := initproc.CheckIDMappings(fmt.Sprintf("mounts[%d] (%s): %s", i, m.Destination, c.field), c.ranges); err != nil {
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
		fd, err := initproc.DetachedIDMapped(src, im.tree, im.recursive, userns)
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
		Args:       []string{ShimBinaryName, "init"},
		Env:        preambleEnv(),
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
		return -1, fmt.Errorf("user namespace helper: %w %q", initproc.ErrUnexpectedMessage, line)
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

func closeFds(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// bindSourceClone is the shim's answer to init's initproc.MsgMountSource: a
// detached clone of spec mount index's bind source, made with the shim's
// (host root's) access; bundle is what a relative source is relative to.
func bindSourceClone(spec *specs.Spec, bundle string, index int) (int, error) {
	if index < 0 || index >= len(spec.Mounts) {
		return -1, fmt.Errorf("init asked for the source of mounts[%d], which the spec does not have", index)
	}
	m := spec.Mounts[index]
	flags, _, _ := initproc.ParseMountOptions(m.Options)
	if m.Type != "bind" && flags&unix.MS_BIND == 0 {
		return -1, fmt.Errorf("init asked for the source of mounts[%d] (%s), which is no bind mount", index, m.Destination)
	}
	src := m.Source
	if !filepath.IsAbs(src) {
		src = filepath.Join(bundle, src)
	}
	fd, err := initproc.CloneMount(src, flags&unix.MS_REC != 0)
	if err != nil {
		return -1, fmt.Errorf("mounts[%d] (%s): %w", index, m.Destination, err)
	}
	return fd, nil
}
