package shim

import (
	"fmt"
	"math"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// cloexecInherited marks every descriptor from 3 up close-on-exec.
// Descriptors containerd (or whoever ran us) leaked to us must not live on
// in the daemon, which outlives containerd's interest in them, nor reach
// containers through it.
func cloexecInherited() error {
	if err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err == nil {
		return nil
	}
	// Kernels before 5.11.
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list open descriptors: %w", err)
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
