package initproc

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// The Linux security modules' labels of a container process: an AppArmor
// profile (process.apparmorProfile), an SELinux process label
// (process.selinuxLabel) and an SELinux mount label (linux.mountLabel).
// Both process labels are set "on exec": the transition happens at the
// process's execve, so nothing of ours runs under them.

// selinuxMagic is selinuxfs's statfs type.
const selinuxMagic = 0xf97cff8c

// selinuxEnabled says whether this host runs SELinux: its filesystem is
// mounted where the kernel puts it.
func selinuxEnabled() bool {
	var st unix.Statfs_t
	return unix.Statfs("/sys/fs/selinux", &st) == nil && st.Type == selinuxMagic
}

// CheckSELinuxLabel refuses a process label where SELinux is off, as runc
// does: the process would otherwise run unconfined.
func CheckSELinuxLabel(field, label string) error {
	if label != "" && !selinuxEnabled() {
		return fmt.Errorf("%s %q is set, but SELinux is disabled or not supported on this host: %w", field, label, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// threadAttrs writes the calling thread's LSM attributes
// (/proc/<pid>/task/<tid>/attr/...) through a procfs instance of the
// process's own, mounted detached (fsopen/fsmount), so that nothing a
// container process mounted over its /proc can catch the write (the
// CVE-2025-52881 class): an exec has joined the container's mount
// namespace by then. It is opened while the process still has the
// capabilities to mount, before the identity switch, and used after.
type threadAttrs struct {
	root int // the detached procfs, or -1: the kernel predates fsopen
}

func openThreadAttrs() (*threadAttrs, error) {
	fsfd, err := unix.Fsopen("proc", unix.FSOPEN_CLOEXEC)
	if errors.Is(err, unix.ENOSYS) {
		return &threadAttrs{root: -1}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("procfs of our own for LSM labels: fsopen: %w", err)
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return nil, fmt.Errorf("procfs of our own for LSM labels: %w", err)
	}
	root, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("procfs of our own for LSM labels: fsmount: %w", err)
	}
	return &threadAttrs{root: root}, nil
}

func (a *threadAttrs) close() {
	if a != nil && a.root >= 0 {
		unix.Close(a.root)
	}
}

// write writes value to the thread's attr/name.
func (a *threadAttrs) write(name, value string) error {
	rel := fmt.Sprintf("%d/task/%d/attr/%s", unix.Getpid(), unix.Gettid(), name)
	var f *os.File
	if a.root >= 0 {
		fd, err := unix.Openat2(a.root, rel, &unix.OpenHow{
			Flags:   unix.O_WRONLY | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_XDEV | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		})
		if err != nil {
			return &os.PathError{Op: "open", Path: "/proc/" + rel, Err: err}
		}
		f = os.NewFile(uintptr(fd), "/proc/"+rel)
	} else {
		// Before Linux 5.2: the container's /proc, checked to be procfs.
		var err error
		if f, err = os.OpenFile("/proc/"+rel, os.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0); err != nil {
			return err
		}
		var st unix.Statfs_t
		if err := unix.Fstatfs(int(f.Fd()), &st); err != nil || st.Type != unix.PROC_SUPER_MAGIC {
			f.Close()
			return fmt.Errorf("/proc/%s is not on procfs: %w", rel, errdefs.ErrFailedPrecondition)
		}
	}
	defer f.Close()
	_, err := f.WriteString(value)
	return err
}

// applyAppArmor makes the process change to profile at its execve.
func (a *threadAttrs) applyAppArmor(profile string) error {
	if profile == "" {
		return nil
	}
	// AppArmor's own attribute directory first (Linux 5.8+, where other
	// LSMs may share attr/exec), then the shared one.
	err := a.write("apparmor/exec", "exec "+profile)
	if errors.Is(err, os.ErrNotExist) {
		err = a.write("exec", "exec "+profile)
	}
	if err != nil {
		return fmt.Errorf("process.apparmorProfile %q: apply the AppArmor profile (is AppArmor enabled on this host?): %w", profile, err)
	}
	return nil
}

// applySELinuxKeyLabel labels the keys the process creates, its session
// keyring among them: set before that keyring is made.
func (a *threadAttrs) applySELinuxKeyLabel(label string) error {
	if label == "" {
		return nil
	}
	if err := a.write("keycreate", label); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("process.selinuxLabel %q: set the key creation label: %w", label, err)
	}
	return nil
}

// applySELinuxLabel makes the process run as label from its execve.
func (a *threadAttrs) applySELinuxLabel(label string) error {
	if label == "" {
		return nil
	}
	if err := a.write("exec", label); err != nil {
		return fmt.Errorf("process.selinuxLabel %q: set the exec label: %w", label, err)
	}
	return nil
}

// withMountLabel adds linux.mountLabel to a mount's data as SELinux's
// context option, as runc does (also where SELinux is off: the kernel then
// ignores or refuses it).
func withMountLabel(data, label string) string {
	if label == "" {
		return data
	}
	opt := "context=" + strconv.Quote(label)
	if data == "" {
		return opt
	}
	return data + "," + opt
}
