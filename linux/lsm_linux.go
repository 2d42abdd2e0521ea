package linux

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

// checkSELinuxLabel refuses a process label where SELinux is off, as runc
// does: the process would otherwise run unconfined.
func checkSELinuxLabel(field, label string) error {
	if label != "" && !selinuxEnabled() {
		return fmt.Errorf("%s %q is set, but SELinux is disabled or not supported on this host: %w", field, label, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// applyAppArmor makes the process change to profile at its execve.
func applyAppArmor(profile string) error {
	if profile == "" {
		return nil
	}
	// AppArmor's own attribute directory first (Linux 5.8+, where other
	// LSMs may share attr/exec), then the shared one.
	err := writeProcAttr("apparmor/exec", "exec "+profile)
	if errors.Is(err, os.ErrNotExist) {
		err = writeProcAttr("exec", "exec "+profile)
	}
	if err != nil {
		return fmt.Errorf("process.apparmorProfile %q: apply the AppArmor profile (is AppArmor enabled on this host?): %w", profile, err)
	}
	return nil
}

// applySELinuxLabel makes the process run as label from its execve, with
// the keys it creates labelled alike.
func applySELinuxLabel(label string) error {
	if label == "" {
		return nil
	}
	if err := writeProcAttr("keycreate", label); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("process.selinuxLabel %q: set the key creation label: %w", label, err)
	}
	if err := writeProcAttr("exec", label); err != nil {
		return fmt.Errorf("process.selinuxLabel %q: set the exec label: %w", label, err)
	}
	return nil
}

// writeProcAttr writes the calling thread's /proc/thread-self/attr/name.
// The caller is locked to its thread. The file must be on procfs: a
// container process may have mounted something else over /proc to catch
// the write.
func writeProcAttr(name, value string) error {
	path := "/proc/thread-self/attr/" + name
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("statfs %s: %w", path, err)
	}
	if st.Type != unix.PROC_SUPER_MAGIC {
		return fmt.Errorf("%s is not on procfs (filesystem type %#x): %w", path, st.Type, errdefs.ErrFailedPrecondition)
	}
	if _, err := f.WriteString(value); err != nil {
		return err
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
