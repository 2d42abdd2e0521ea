package linux

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"

	"github.com/containerd/cgroups/v3/cgroup1"
)

// On cgroup v1 a process that is moved into a cgroup (cgroup.procs) takes
// the kernel's global threadgroup lock, and the first writer of a burst
// waits for an RCU grace period: 5 to 15 ms on the hosts measured, the
// largest single cost of a Create or an exec. A thread that moves itself
// alone (0 written to a hierarchy's tasks file) skips that lock, and what
// the thread forks is born where the thread stands. So the shim spawns a
// container process from a thread of its own that first joins the
// container's v1 cgroups, and on a hybrid host clones into the unified
// hierarchy's cgroup (CLONE_INTO_CGROUP); the thread then goes back and
// ends.
//
// While it is there, the thread counts in the container's cgroups: the
// shim's pid shows in their cgroup.procs (Pids leaves it out), and a
// freeze would stop a thread of the shim's Go runtime, which can stall the
// whole shim. So this is done only while nothing can freeze the cgroup:
// freezer.state THAWED, read under the container's freeze lock, which Pause
// and Resume hold (for init: also an empty cgroup, which no other
// container sharing the cgroupsPath can be pausing).

// threadPlacement is where a spawning thread must go to be in a v1
// cgroup: its path in every hierarchy, the freezer's directory, and on a
// hybrid host the unified hierarchy's cgroup directory.
type threadPlacement struct {
	path        string
	hierarchies []threadHierarchy
	freezer     string // "" where no freezer is mounted
	unified     string // "" where there is no unified hierarchy beside
}

// threadHierarchy is one v1 hierarchy: its mount point, and its name in
// /proc/<pid>/cgroup.
type threadHierarchy struct {
	root, name string
}

func (c *cgroupV1) threadPlacement() threadPlacement {
	tp := threadPlacement{path: c.path}
	for _, s := range c.cg.Subsystems() {
		p, ok := s.(interface{ Path(string) string })
		if !ok {
			continue
		}
		switch s.Name() {
		case "unified":
			tp.unified = p.Path(c.path)
			continue
		case cgroup1.Freezer:
			tp.freezer = p.Path(c.path)
		}
		tp.hierarchies = append(tp.hierarchies, threadHierarchy{root: p.Path("/"), name: string(s.Name())})
	}
	return tp
}

// errNotFromThread: the cgroup's state does not allow the thread's way;
// the caller spawns and moves instead.
var errNotFromThread = errors.New("spawn from a thread in the cgroup not possible here")

// startInCgroupThread starts cmd through start from a thread of its own
// placed in tp, so the process is born in the cgroup. freezeMu (may be
// nil) is held throughout; requireEmpty refuses a cgroup that holds any
// process. On errNotFromThread nothing was started and the thread left
// nothing behind; any other error is start's.
func startInCgroupThread(cmd *exec.Cmd, tp threadPlacement, freezeMu *sync.Mutex, requireEmpty bool, start func(*exec.Cmd) (<-chan int, error)) (<-chan int, error) {
	if freezeMu != nil {
		freezeMu.Lock()
		defer freezeMu.Unlock()
	}
	if tp.freezer == "" {
		return nil, errNotFromThread
	}
	state, err := os.ReadFile(filepath.Join(tp.freezer, "freezer.state"))
	if err != nil || strings.TrimSpace(string(state)) != "THAWED" {
		return nil, errNotFromThread
	}
	if requireEmpty {
		procs, err := os.ReadFile(filepath.Join(tp.freezer, "cgroup.procs"))
		if err != nil || len(strings.TrimSpace(string(procs))) > 0 {
			return nil, errNotFromThread
		}
	}
	type result struct {
		exited <-chan int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine, so nothing
		// else of the shim ever runs on it in the container's cgroups.
		runtime.LockOSThread()
		exited, err := startFromThread(cmd, tp, start)
		done <- result{exited, err}
	}()
	res := <-done
	return res.exited, res.err
}

// startFromThread runs on a locked thread: it joins tp, starts cmd, and
// goes back where it was in every hierarchy before it returns, so no
// thread of the shim is left in the container's cgroups once the caller
// goes on (the thread also ends with its goroutine, but not at once).
func startFromThread(cmd *exec.Cmd, tp threadPlacement, start func(*exec.Cmd) (<-chan int, error)) (<-chan int, error) {
	own, err := cgroup1.ParseCgroupFile("/proc/thread-self/cgroup")
	if err != nil {
		return nil, errNotFromThread
	}
	var home []string
	for _, h := range tp.hierarchies {
		p, ok := own[h.name]
		if !ok {
			p, ok = own["name="+h.name]
		}
		if !ok {
			return nil, errNotFromThread
		}
		home = append(home, filepath.Join(h.root, p, "tasks"))
	}
	goHome := func() error {
		var errs []error
		for _, tasks := range home {
			if err := writeSelfTask(tasks); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	for _, h := range tp.hierarchies {
		if err := writeSelfTask(filepath.Join(h.root, tp.path, "tasks")); err != nil {
			if herr := goHome(); herr != nil {
				return nil, fmt.Errorf("join cgroup %s: %v, and back: %w", tp.path, err, herr)
			}
			return nil, errNotFromThread
		}
	}
	var unified *os.File
	if tp.unified != "" {
		if unified, err = os.Open(tp.unified); err != nil {
			if herr := goHome(); herr != nil {
				return nil, fmt.Errorf("leave cgroup %s: %w", tp.path, herr)
			}
			return nil, errNotFromThread
		}
		defer unified.Close()
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(unified.Fd())}
	}
	exited, startErr := start(cmd)
	if err := goHome(); err != nil && startErr == nil {
		// The process runs; the thread, which ends now, is still counted
		// in the container's cgroups for a moment.
		slog.Warn("spawning thread could not leave the container's cgroup", "cgroup", tp.path, "error", err)
	}
	if startErr != nil {
		// Not started (say pids.max counted the thread too): the caller
		// tries the usual way.
		cmd.SysProcAttr, cmd.Process = nil, nil
		return nil, errNotFromThread
	}
	return exited, nil
}

// writeSelfTask moves the calling thread alone into the cgroup of tasks.
func writeSelfTask(tasks string) error {
	f, err := os.OpenFile(tasks, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write([]byte("0")); err != nil {
		return fmt.Errorf("write 0 to %s: %w", tasks, err)
	}
	return nil
}

// withoutShim leaves the shim's own pid out of pids: a spawning thread of
// the shim may stand in a container's cgroup for a moment.
func withoutShim(pids []int) []int {
	self := os.Getpid()
	out := pids[:0]
	for _, p := range pids {
		if p != self {
			out = append(out, p)
		}
	}
	return out
}
