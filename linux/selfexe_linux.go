package linux

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/minishim/containerd-shim-mini-v2/linux/initproc"
	"golang.org/x/sys/unix"
)

// ShimBinaryName is the shim binary's name, as containerd looks it up.
const ShimBinaryName = "containerd-shim-mini-v2"

// findContainerBinary is the binary container processes start from, and its
// name: the init binary (initproc.BinaryName) beside the shim's own, when
// there is one, which starts in about half the time the whole shim takes;
// else the shim's, in its "init" mode.
func findContainerBinary() (path, name string, _ error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return "", "", fmt.Errorf("own binary: %w", err)
	}
	if initBin, ok := initBinaryBeside(exe); ok {
		return initBin, initproc.BinaryName, nil
	}
	return "/proc/self/exe", ShimBinaryName, nil
}

// initBinaryBeside is the init binary in exe's directory, if one is there
// to run. A shim binary replaced on disk while it runs has a neighbour that
// may be another build's, which it does not take.
func initBinaryBeside(exe string) (string, bool) {
	if strings.HasSuffix(exe, " (deleted)") {
		return "", false
	}
	initBin := filepath.Join(filepath.Dir(exe), initproc.BinaryName)
	st, err := os.Stat(initBin)
	if err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return "", false
	}
	// Every container process runs it with the shim's privileges: only
	// one that no one but the shim's user could have written.
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || int(sys.Uid) != os.Geteuid() || st.Mode().Perm()&0o022 != 0 {
		return "", false
	}
	return initBin, true
}

// sealedBinary opens binary (a path, or /proc/self/exe) where no process
// can write to it. A container that reaches /proc/<pid>/exe of a container
// process before it execve()s then finds a file it cannot change, never
// the binary on the host (the CVE-2019-5736 class). First choice: the
// binary seen through a read-only overlayfs that is mounted nowhere
// (fsmount, detached; the open file keeps it alive), which costs no copy.
// Where the kernel or the binary's path does not allow that: a copy in a
// sealed memfd, which costs the binary's size in memory for as long as the
// shim lives.
func sealedBinary(binary string) (*os.File, error) {
	f, err := overlayBinary(binary)
	if err != nil {
		src, err := os.Open(binary)
		if err != nil {
			return nil, err
		}
		defer src.Close()
		if f, err = memfdBinary(src); err != nil {
			return nil, err
		}
	}
	return aboveChildFds(f)
}

// minExecFd is the lowest descriptor a binary that children start from
// (as /proc/self/fd/N) may have. os/exec lays a child's fds out in the
// child before execve: stdio and ExtraFiles from 0 up, and, to get them
// there, copies of some just above them. A binary at one of those numbers
// would be replaced by the handshake socket or a copy (execve then fails
// with EACCES); these few ExtraFiles never reach this far.
const minExecFd = 64

// aboveChildFds moves f to a descriptor of minExecFd or more.
func aboveChildFds(f *os.File) (*os.File, error) {
	defer f.Close()
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, minExecFd)
	if err != nil {
		return nil, fmt.Errorf("move %s above the children's descriptors: %w", f.Name(), err)
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// emptyLowerDir is the second, empty, lower layer of the overlay: one
// lower layer alone is not a read-only overlay the kernel accepts.
const emptyLowerDir = "/run/containerd-shim-mini-v2/empty"

// overlayBinary opens binary through a detached read-only overlayfs whose
// lower layers are the binary's directory and an empty one.
func overlayBinary(binary string) (*os.File, error) {
	path, err := filepath.EvalSymlinks(binary)
	if err != nil {
		return nil, err
	}
	dir, base := filepath.Split(path)
	// lowerdir takes a list: these would be read as separators or escapes.
	if strings.ContainsAny(path, ":,\\") || strings.HasSuffix(path, " (deleted)") {
		return nil, fmt.Errorf("binary path %q does not fit an overlay lowerdir", path)
	}
	if err := os.MkdirAll(emptyLowerDir, 0o700); err != nil {
		return nil, err
	}
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigSetString(fsfd, "lowerdir", filepath.Clean(dir)+":"+emptyLowerDir); err != nil {
		return nil, fmt.Errorf("overlay lowerdir: %w", err)
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return nil, fmt.Errorf("create overlay: %w", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOSUID)
	if err != nil {
		return nil, fmt.Errorf("fsmount overlay: %w", err)
	}
	defer unix.Close(mfd)
	fd, err := unix.Openat(mfd, base, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s in the overlay: %w", base, err)
	}
	f := os.NewFile(uintptr(fd), "overlay:"+base)
	if err := checkSealed(f, path); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// checkSealed makes sure f is the binary at exe and cannot be opened for
// writing through its /proc link, as a container process would try.
func checkSealed(f *os.File, exe string) error {
	got, err := f.Stat()
	if err != nil {
		return err
	}
	want, err := os.Stat(exe)
	if err != nil {
		return err
	}
	if !got.Mode().IsRegular() || got.Size() != want.Size() {
		return fmt.Errorf("%s through the overlay is not the binary", exe)
	}
	w, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), os.O_WRONLY, 0)
	if err == nil {
		w.Close()
		return errors.New("the overlay's binary opens for writing")
	}
	return nil
}

// memfdBinary copies src, an open binary, into a sealed memfd.
func memfdBinary(src *os.File) (*os.File, error) {
	fd, err := unix.MemfdCreate(ShimBinaryName, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	mem := os.NewFile(uintptr(fd), "memfd:"+ShimBinaryName)
	if _, err := io.Copy(mem, io.NewSectionReader(src, 0, 1<<62)); err != nil {
		mem.Close()
		return nil, fmt.Errorf("copy %s into memfd: %w", src.Name(), err)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(mem.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		mem.Close()
		return nil, fmt.Errorf("seal memfd: %w", err)
	}
	return mem, nil
}
