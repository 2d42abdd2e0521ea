package integration

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Issue 9, item 4: ctr closes its ends of the output fifos as soon as it
// learned of the exit (1.6's task.Delete closes them before it waits for
// its copies, 2.x's cio Cancel does), so whatever it had not read from a
// fifo by then is lost. Under load that was now and then all the output of
// an `echo`. The shim must report the exit only once the output has left
// the fifo. Here ctr's copy is held up on purpose: its stdout is a pipe
// nobody reads for a while, so its copy stops reading the fifo, which
// still holds the end of the output when the container exits.
func TestOutputReadLate(t *testing.T) {
	const size = 100000 // more than ctr's copy buffer and its stdout pipe hold
	const readAfter = time.Second
	forEachTarget(t, func(t *testing.T, tg target) {
		tc := newCase(t, tg, "readlate")
		args := tc.runArgs([]string{"--rm"}, "", "/bin/sh", "-c", fmt.Sprintf("head -c %d /dev/zero", size))
		full := tc.c.CtrArgs(args...)
		cmd := exec.CommandContext(tc.ctx, tc.c.Version.CtrPath(), full...)
		cmd.Env = append(os.Environ(), quietCtr)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatalf("pipe: %v", err)
		}
		defer r.Close()
		var stderr strings.Builder
		cmd.Stdout, cmd.Stderr = w, &stderr
		err = cmd.Start()
		w.Close()
		if err != nil {
			t.Fatalf("start ctr: %v", err)
		}
		got := make(chan int64, 1)
		go func() {
			time.Sleep(readAfter)
			n, _ := io.Copy(io.Discard, r)
			got <- n
		}()
		werr := cmd.Wait()
		n := <-got
		if werr != nil {
			t.Fatalf("ctr run: %v\nstderr: %s", werr, stderr.String())
		}
		switch {
		case n == size:
		case tg.runtime == RuncRuntime:
			// runc-v2 publishes the exit without waiting for the output
			// at all, and loses the same bytes.
			t.Logf("%s on containerd %s: ctr printed %d of %d bytes", tg.runtime, tg.d.version.Name, n, size)
		default:
			t.Errorf("ctr printed %d of the %d bytes the container wrote", n, size)
		}
	})
}
