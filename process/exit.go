// Package process holds the state machines of the processes a shim runs:
// the container's init and its exec processes.
package process

import "time"

// Exit is what the reaper learned about one process that ended.
type Exit struct {
	Pid int
	// Status is the shell-style status: the exit code, or 128+signal when the
	// process was killed by a signal (what runc-v2 reports and ctr prints).
	Status    int
	Timestamp time.Time
}
