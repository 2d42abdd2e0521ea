package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// CRIUCheck is `criu check`'s verdict on this kernel, asked once: nil
// where CRIU can checkpoint here (Debian's 3.17 cannot on a 6.18 kernel;
// the cgroup v2 guest's 6.1 is fine).
var CRIUCheck = sync.OnceValue(func() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "criu", "check").CombinedOutput()
	if err != nil {
		return fmt.Errorf("criu check: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
})

// RequireCRIU skips t, loudly, where CRIU cannot run.
func RequireCRIU(t testing.TB) {
	t.Helper()
	if err := CRIUCheck(); err != nil {
		t.Skipf("SKIPPED: CRIU cannot run on this host, the checkpoint cases run in the cgroup v2 guest (make test-guest-focus): %v", err)
	}
}

// CounterScript counts in the shell's memory, writing each value through
// a descriptor opened once on path: a restore that lost the counter starts
// again at 1, one that lost the descriptor's offset writes over the first
// lines (ReadCounterFile tells).
func CounterScript(path string) string {
	return "exec 3>" + path + "; i=0; while true; do i=$((i+1)); echo $i >&3; sleep 0.1; done"
}

// WaitCounter waits until the counter in path passes n, and returns it.
func WaitCounter(t testing.TB, path string, n int) int {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		c, err := ReadCounterFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if c > n {
			return c
		}
	}
	t.Fatalf("the counter in %s did not pass %d within 30s", path, n)
	return 0
}

// ReadCounterFile reads a file a container's counter writes one number a
// line to, 1, 2, 3, ...: the count, or an error where a line is out of
// order (the counter or its descriptor's offset was lost). A file not
// there yet counts 0.
func ReadCounterFile(path string) (int, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	lines := strings.Fields(string(data))
	for i, l := range lines {
		if l != strconv.Itoa(i+1) {
			return 0, fmt.Errorf("%s: line %d is %q, want %d (the counter or its file offset was lost)", path, i+1, l, i+1)
		}
	}
	return len(lines), nil
}
