package initproc

import (
	"fmt"
	"math"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// CloexecExtraFds marks every descriptor above stderr close-on-exec, so
// what this process holds does not outlive its execve(): nothing of the
// shim (the handshake socket, the sealed binary, Go's own fds) reaches the
// user's process, and nothing containerd leaked to `start` lives on in the
// daemon. For init the handshake socket closing is also how the parent
// learns that execve succeeded.
func CloexecExtraFds() error {
	if err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err == nil {
		return nil
	}
	// Kernels before 5.11.
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list own fds: %w", err)
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd < 3 {
			continue
		}
		// The directory's own descriptor is gone by now: EBADF is fine.
		unix.CloseOnExec(fd)
	}
	return nil
}
