package initproc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// DefaultDevices are the nodes every container gets (runtime-spec "Default
// Devices"); the spec's own devices override them by path.
func DefaultDevices() []specs.LinuxDevice {
	mode := fs.FileMode(0o666)
	dev := func(p string, major, minor int64) specs.LinuxDevice {
		return specs.LinuxDevice{Path: p, Type: "c", Major: major, Minor: minor, FileMode: &mode}
	}
	return []specs.LinuxDevice{
		dev("/dev/null", 1, 3),
		dev("/dev/zero", 1, 5),
		dev("/dev/full", 1, 7),
		dev("/dev/random", 1, 8),
		dev("/dev/urandom", 1, 9),
		dev("/dev/tty", 5, 0),
	}
}

// setupDev fills the container's /dev (still under root, before the pivot):
// default and spec devices, the standard symlinks, and /dev/ptmx pointing at
// the container's own devpts instance when it has one.
func setupDev(root string, devices []specs.LinuxDevice, ptsMounted bool) error {
	all := DefaultDevices()
	for _, d := range devices {
		replaced := false
		for i := range all {
			if filepath.Clean(all[i].Path) == filepath.Clean(d.Path) {
				all[i], replaced = d, true
			}
		}
		if !replaced {
			all = append(all, d)
		}
	}
	for _, d := range all {
		if err := createDevice(root, d); err != nil {
			return fmt.Errorf("create device %s in container: %w", d.Path, err)
		}
	}
	devDir, err := resolveInRoot(root, "/dev")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(devDir, 0o755); err != nil {
		return fmt.Errorf("create /dev in container: %w", err)
	}
	links := [][2]string{
		{"/proc/self/fd", "fd"},
		{"/proc/self/fd/0", "stdin"},
		{"/proc/self/fd/1", "stdout"},
		{"/proc/self/fd/2", "stderr"},
	}
	if _, err := os.Stat("/proc/kcore"); err == nil {
		links = append(links, [2]string{"/proc/kcore", "core"})
	}
	if ptsMounted {
		// The node an image may ship points at the host's devpts instance.
		if err := os.Remove(filepath.Join(devDir, "ptmx")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("replace /dev/ptmx in container: %w", err)
		}
		links = append(links, [2]string{"pts/ptmx", "ptmx"})
	}
	for _, l := range links {
		if err := os.Symlink(l[0], filepath.Join(devDir, l[1])); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("symlink /dev/%s -> %s in container: %w", l[1], l[0], err)
		}
	}
	return nil
}

// createDevice makes a node with mknod, or, where that is not allowed (a
// user namespace, a nodev mount), binds the host's node of the same path.
func createDevice(root string, d specs.LinuxDevice) error {
	typ, err := deviceType(d.Type)
	if err != nil {
		return err
	}
	perm := uint32(0o666)
	if d.FileMode != nil {
		perm = uint32(d.FileMode.Perm())
	}
	p, err := resolveInRoot(root, d.Path)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	err = unix.Mknod(p, typ|perm, int(unix.Mkdev(uint32(d.Major), uint32(d.Minor))))
	switch {
	case errors.Is(err, unix.EEXIST):
		// The image or a mount already provides it.
		return nil
	case errors.Is(err, unix.EPERM):
		return mountAt(root, d.Path, false, func(target string) error {
			return unix.Mount(d.Path, target, "", unix.MS_BIND, "")
		}, 0, nil, nil)
	case err != nil:
		return fmt.Errorf("mknod: %w", err)
	}
	// mknod honours the umask.
	if err := unix.Chmod(p, perm); err != nil {
		return err
	}
	if d.UID != nil || d.GID != nil {
		uid, gid := -1, -1
		if d.UID != nil {
			uid = int(*d.UID)
		}
		if d.GID != nil {
			gid = int(*d.GID)
		}
		if err := unix.Lchown(p, uid, gid); err != nil {
			return err
		}
	}
	return nil
}

func deviceType(t string) (uint32, error) {
	switch t {
	case "c", "u":
		return unix.S_IFCHR, nil
	case "b":
		return unix.S_IFBLK, nil
	case "p":
		return unix.S_IFIFO, nil
	}
	return 0, fmt.Errorf("device type %q is not one of c, u, b, p: %w", t, errdefs.ErrInvalidArgument)
}
