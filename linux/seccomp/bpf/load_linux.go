package bpf

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Load installs prog for the calling thread (every thread of the process
// with TSYNC), which must be locked to its goroutine and execve() from it,
// so the user's process inherits the filter. It returns the user
// notification fd when the program has a listener, else -1.
//
// Loading takes no_new_privs or CAP_SYS_ADMIN; the caller orders it so one
// of them holds.
func Load(prog *Program) (int, error) {
	if err := prog.CheckShape(); err != nil {
		return -1, fmt.Errorf("load seccomp filter: %w", err)
	}
	fprog := unix.SockFprog{Len: uint16(len(prog.Filter) / 8), Filter: (*unix.SockFilter)(unsafe.Pointer(&prog.Filter[0]))}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uintptr(prog.Flags), uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if errno != 0 {
		return -1, fmt.Errorf("load seccomp filter: %w", errno)
	}
	if prog.Listener() {
		return int(r), nil
	}
	return -1, nil
}
