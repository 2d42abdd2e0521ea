package integration

import (
	"fmt"
	"sync"
	"testing"
)

// Case 8: many containers at once on one daemon each get their own output
// and exit code, and all are cleaned up.
func TestConcurrent(t *testing.T) {
	const n = 20
	forEachTarget(t, func(t *testing.T, tg target) {
		cases := make([]*tcase, n)
		for i := range cases {
			cases[i] = newCase(t, tg, fmt.Sprintf("conc%d", i))
		}
		results := make([]Result, n)
		var wg sync.WaitGroup
		for i, tc := range cases {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = tc.run("", "/bin/sh", "-c", fmt.Sprintf("echo %d", i))
			}()
		}
		wg.Wait()
		for i, res := range results {
			if want := fmt.Sprintf("%d\n", i); res.ExitCode != 0 || res.Stdout != want {
				t.Errorf("container %d: want stdout %q and exit code 0:\n%s", i, want, res)
			}
		}
	})
}
