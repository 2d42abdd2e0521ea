package client

import (
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/oci"
)

// pidsScript forks sleepers in a subshell until fork fails: busybox ash
// gives up on the first failed fork with "can't fork", which ends the
// subshell only. The outer shell (pid 1) then reports and turns into a
// sleeper itself (exec: no fork needed), so the container stays at the
// limit until the test kills it.
const pidsScript = `( i=0; while [ $i -lt 20 ]; do /bin/sleep 1000 & i=$((i+1)); echo forked $i; done ); echo loop ended; exec /bin/sleep 1000`

var forkedLine = regexp.MustCompile(`(?m)^forked (\d+)$`)

// TestClientPidsLimit: a pids limit from the spec is in the cgroup before
// the process runs, so forks past it fail inside the container and the
// number of tasks in the cgroup never exceeds it.
func TestClientPidsLimit(t *testing.T) {
	const limit = 8
	forEachTarget(t, func(t *testing.T, tg target) {
		tc := newCase(t, tg, "pids")
		var out syncBuffer
		s := tc.start(outputTo(&out), oci.WithPidsLimit(limit), oci.WithProcessArgs("/bin/sh", "-c", pidsScript))
		dir := tc.c.CgroupDir("pids", tc.id)
		if got := tc.cgroupFile("pids", "pids.max"); got != strconv.Itoa(limit) {
			t.Errorf("pids.max = %q, want %d", got, limit)
		}

		// Sample pids.current from outside while the container forks.
		stop := make(chan struct{})
		var (
			wg      sync.WaitGroup
			peak    int
			samples int
			readErr error
		)
		wg.Go(func() {
			tick := time.NewTicker(2 * time.Millisecond)
			defer tick.Stop()
			for {
				v, err := readCgroupFile(dir, "pids.current")
				if err == nil {
					var n int
					if n, err = strconv.Atoi(v); err == nil {
						samples++
						peak = max(peak, n)
					}
				}
				if err != nil && readErr == nil {
					readErr = err
				}
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		})
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(out.String(), "loop ended") && time.Now().Before(deadline) {
			select {
			case st := <-s.exit:
				close(stop)
				wg.Wait()
				t.Fatalf("container exited (%d) before its fork loop ended; output:\n%s", st.ExitCode(), out.String())
			case <-time.After(20 * time.Millisecond):
			}
		}
		// A few more samples at the steady state.
		time.Sleep(100 * time.Millisecond)
		close(stop)
		wg.Wait()
		output := out.String()
		t.Logf("%s: output:\n%s\npids.current peaked at %d in %d samples", tg.name(), output, peak, samples)

		if !strings.Contains(output, "loop ended") {
			t.Fatalf("fork loop did not end within 20s; output:\n%s", output)
		}
		if !strings.Contains(output, "can't fork") && !strings.Contains(output, "Resource temporarily unavailable") {
			t.Errorf("no fork failure reported; output:\n%s", output)
		}
		forked := 0
		for _, m := range forkedLine.FindAllStringSubmatch(output, -1) {
			n, _ := strconv.Atoi(m[1])
			forked = max(forked, n)
		}
		// pid 1 and the subshell take two of the limit.
		if forked == 0 || forked > limit-2 {
			t.Errorf("%d sleepers forked, want 1..%d", forked, limit-2)
		}
		if readErr != nil {
			t.Errorf("reading pids.current: %v", readErr)
		}
		if samples == 0 || peak > limit || peak < 2 {
			t.Errorf("pids.current peaked at %d in %d samples, want 2..%d", peak, samples, limit)
		}
		if n := pidsMaxEvents(tc); n < 1 {
			t.Errorf("pids.events counts %d forks refused at the limit, want at least 1", n)
		}
		if st := tc.kill(s); st.ExitCode() != 137 {
			t.Errorf("exit status after SIGKILL = %d (%v), want 137", st.ExitCode(), st.Error())
		}
	})
}

// pidsMaxEvents is the "max" count of pids.events: how many forks the
// limit refused.
func pidsMaxEvents(tc *tcase) int {
	tc.t.Helper()
	for _, line := range strings.Split(tc.cgroupFile("pids", "pids.events"), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "max" {
			n, err := strconv.Atoi(f[1])
			if err != nil {
				tc.t.Fatalf("pids.events: %q: %v", line, err)
			}
			return n
		}
	}
	tc.t.Fatalf("pids.events has no max line")
	return 0
}
