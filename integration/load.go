package integration

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// LoadResult is what RunLoad saw.
type LoadResult struct {
	Runs, Lossy, Failed int
	Examples            []string // a few of what went wrong
}

// RunLoad runs total `ctr run --rm ... seq 1 lines`, parallel at a time,
// while burners CPU-bound processes compete for the cpus, and counts the
// runs whose output missed or garbled a line (Lossy) or that failed.
func (c *Containerd) RunLoad(ctx context.Context, runtime, rootfs, prefix string, total, parallel, lines, burners int) (LoadResult, error) {
	var res LoadResult
	stop, err := startBurners(burners)
	if err != nil {
		return res, err
	}
	defer stop()
	want := seqOutput(lines)
	var mu sync.Mutex
	note := func(lossy bool, what string) {
		mu.Lock()
		defer mu.Unlock()
		if lossy {
			res.Lossy++
		} else {
			res.Failed++
		}
		if len(res.Examples) < 5 {
			res.Examples = append(res.Examples, what)
		}
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
				r := c.Ctr(rctx, nil, "run", "--rm", "--runtime", runtime, "--rootfs", rootfs,
					prefix+strconv.Itoa(i), "/bin/seq", "1", strconv.Itoa(lines))
				cancel()
				switch {
				case r.ExitCode != 0 || r.Err != nil:
					note(false, r.String())
				case r.Stdout != want:
					got := strings.Count(r.Stdout, "\n")
					note(true, fmt.Sprintf("run %d: %d of %d lines (%d bytes of %d)", i, got, lines, len(r.Stdout), len(want)))
				}
			}
		}()
	}
	for i := 0; i < total; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	res.Runs = total
	return res, nil
}

func seqOutput(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		b.WriteString(strconv.Itoa(i))
		b.WriteByte('\n')
	}
	return b.String()
}

// startBurners starts n shell loops that burn a cpu each, in a process
// group of their own, and returns what kills them.
func startBurners(n int) (func(), error) {
	var cmds []*exec.Cmd
	stop := func() {
		for _, c := range cmds {
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			_ = c.Wait()
		}
	}
	for i := 0; i < n; i++ {
		c := exec.Command("/bin/sh", "-c", "while :; do :; done")
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			stop()
			return nil, fmt.Errorf("start cpu burner: %w", err)
		}
		cmds = append(cmds, c)
	}
	return stop, nil
}
