package integration

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"
)

// ProcessFootprint is what a long-lived process holds at one moment.
type ProcessFootprint struct {
	FDs, Threads int
	Memory       MemoryUsage
}

func (f ProcessFootprint) String() string {
	return fmt.Sprintf("%d fds, %d threads, Rss %d KiB, Anonymous %d KiB", f.FDs, f.Threads, f.Memory.RssKiB, f.Memory.AnonymousKiB)
}

// ReadFootprint reads pid's open fds, threads and memory.
func ReadFootprint(pid int) (ProcessFootprint, error) {
	var f ProcessFootprint
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return f, err
	}
	f.FDs = len(fds)
	threads, err := ProcStatusField(pid, "Threads")
	if err != nil {
		return f, err
	}
	f.Threads, _ = strconv.Atoi(threads)
	f.Memory, err = ReadMemoryUsage(pid)
	return f, err
}

// SoakExecs runs n execs of /bin/true, one after the other, into the
// running container id, and reads the footprint of the shim serving it
// (found by runtime) before the first and after every `every` execs.
func (c *Containerd) SoakExecs(ctx context.Context, runtime, id string, n, every int) ([]ProcessFootprint, error) {
	shim, ok := c.ShimProcess(runtime, id)
	if !ok {
		return nil, fmt.Errorf("no %s serves %s", ShimBinaryName(runtime), id)
	}
	first, err := ReadFootprint(shim.Pid)
	if err != nil {
		return nil, err
	}
	out := []ProcessFootprint{first}
	for i := 1; i <= n; i++ {
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		res := c.Ctr(rctx, nil, "tasks", "exec", "--exec-id", "soak"+strconv.Itoa(i), id, "/bin/true")
		cancel()
		if res.ExitCode != 0 {
			return out, fmt.Errorf("exec %d into %s: %s", i, id, res)
		}
		if i%every == 0 {
			f, err := ReadFootprint(shim.Pid)
			if err != nil {
				return out, err
			}
			out = append(out, f)
		}
	}
	return out, nil
}

// SoakLifecycles runs n `ctr run --rm ... /bin/true`, one after the
// other, and reads containerd's footprint before the first and after
// every `every` runs.
func (c *Containerd) SoakLifecycles(ctx context.Context, runtime, rootfs, prefix string, n, every int) ([]ProcessFootprint, error) {
	first, err := ReadFootprint(c.Pid())
	if err != nil {
		return nil, err
	}
	out := []ProcessFootprint{first}
	for i := 1; i <= n; i++ {
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		res := c.Ctr(rctx, nil, "run", "--rm", "--runtime", runtime, "--rootfs", rootfs, prefix+strconv.Itoa(i), "/bin/true")
		cancel()
		if res.ExitCode != 0 {
			return out, fmt.Errorf("run %d: %s", i, res)
		}
		if i%every == 0 {
			f, err := ReadFootprint(c.Pid())
			if err != nil {
				return out, err
			}
			out = append(out, f)
		}
	}
	return out, nil
}
