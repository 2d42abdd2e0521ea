package linux

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// stateFile is kept in the bundle so that `delete`, run by containerd after
// the shim died, can find and undo what Create did.
const stateFile = "mini-state.json"

type diskState struct {
	ID string `json:"id"`
	// InitPid and InitStart (the process's start time in clock ticks) let
	// cleanup tell our init from a later process that reused the pid.
	InitPid   int    `json:"init_pid,omitempty"`
	InitStart uint64 `json:"init_start,omitempty"`
	// PidNS is the inode of init's own pid namespace (0: it has none), so
	// cleanup kills only its processes in a cgroup others may share.
	PidNS  uint64 `json:"pid_ns,omitempty"`
	Cgroup string `json:"cgroup,omitempty"`
	// SystemdUnit and SystemdSlice are set when systemd made the cgroup:
	// cleanup stops the unit.
	SystemdUnit  string `json:"systemd_unit,omitempty"`
	SystemdSlice string `json:"systemd_slice,omitempty"`
	// RootfsMount is where Create mounted the request's rootfs, if it did.
	RootfsMount string `json:"rootfs_mount,omitempty"`
}

func writeState(bundle string, st diskState) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := filepath.Join(bundle, "."+stateFile+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(bundle, stateFile)); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

func readState(bundle string) (diskState, error) {
	var st diskState
	data, err := os.ReadFile(filepath.Join(bundle, stateFile))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("parse %s: %w", filepath.Join(bundle, stateFile), err)
	}
	return st, nil
}

func removeState(bundle string) error {
	err := os.Remove(filepath.Join(bundle, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// processStartTime reads field 22 of /proc/PID/stat.
func processStartTime(pid int) (uint64, error) {
	fields, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// procStat is /proc/PID/stat from field 3 (the state) on.
func procStat(pid int) ([]string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	// The command name may hold spaces and parentheses: skip past the last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	fields := strings.Fields(s[i+1:])
	// fields[0] is field 3 (state); start time is field 22.
	if len(fields) < 20 {
		return nil, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return fields, nil
}

// pfExiting is the kernel's PF_EXITING task flag: set once do_exit() has
// begun, before the process gives up its namespaces.
const pfExiting = 0x4

// processExiting says whether pid has ended or is ending: gone, a zombie,
// or inside do_exit() (PF_EXITING in field 9 of /proc/PID/stat), where its
// namespaces may already be torn down while its state still says running.
func processExiting(pid int) bool {
	fields, err := procStat(pid)
	if err != nil {
		// Gone is ended; any other failure to read says nothing.
		return errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH)
	}
	return statExiting(fields)
}

// statExiting is processExiting on the fields procStat returns.
func statExiting(fields []string) bool {
	if fields[0] == "Z" || fields[0] == "X" {
		return true
	}
	flags, err := strconv.ParseUint(fields[6], 10, 64)
	return err == nil && flags&pfExiting != 0
}

// waitGone waits up to timeout for pid to have exited (gone, or a zombie
// left for the reaper): it has then left its cgroup.
func waitGone(pid int, timeout time.Duration) {
	end := time.Now().Add(timeout)
	for time.Now().Before(end) {
		if fields, err := procStat(pid); err != nil || fields[0] == "Z" || fields[0] == "X" {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}
