// Package process holds the state machines of the processes a shim runs:
// the container's init and its exec processes.
package process

import (
	"syscall"
	"time"
)

// Exit is what the reaper learned about one process that ended.
type Exit struct {
	Pid int
	// Status is the shell-style status: the exit code, or 128+signal when the
	// process was killed by a signal (what runc-v2 reports and ctr prints).
	Status    int
	Timestamp time.Time
}

// StatusOf converts a wait status to Exit.Status's convention: the exit
// code, or 128+signal. ended is false for stop/continue reports.
func StatusOf(ws syscall.WaitStatus) (status int, ended bool) {
	switch {
	case ws.Exited():
		return ws.ExitStatus(), true
	case ws.Signaled():
		return 128 + int(ws.Signal()), true
	default:
		return 0, false
	}
}
