package linux

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// sealedSelf copies the running binary into a sealed memfd. Init and exec
// processes are started from that copy, so a container that reaches
// /proc/<pid>/exe of one of them before it execve()s finds an immutable
// in-memory file, never the shim binary on the host (the CVE-2019-5736 class).
func sealedSelf() (*os.File, error) {
	src, err := os.Open("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("open own binary: %w", err)
	}
	defer src.Close()
	fd, err := unix.MemfdCreate("containerd-shim-mini-v2", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	mem := os.NewFile(uintptr(fd), "memfd:containerd-shim-mini-v2")
	if _, err := io.Copy(mem, src); err != nil {
		mem.Close()
		return nil, fmt.Errorf("copy own binary into memfd: %w", err)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(mem.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		mem.Close()
		return nil, fmt.Errorf("seal memfd: %w", err)
	}
	return mem, nil
}
