package integration

import (
	"testing"
)

// Issue 9, soak (short; `make soak` runs the long one and prints the
// figures): 300 execs into one container leave its shim holding no more
// fds or threads than after the first 100 (a leak grows with every exec),
// and its memory within a bound that one more exec's garbage cannot
// explain away.
func TestSoakExecs(t *testing.T) {
	const execs, every = 300, 100
	// Go's heap settles above its first size; what it holds for good is
	// bounded by GOGC, not by the number of execs.
	const memBoundKiB = 2048
	if Emulated() {
		t.Skip("soak: too long under emulation")
	}
	forEachTarget(t, func(t *testing.T, tg target) {
		tc := newCase(t, tg, "soak")
		tc.startDetached("/bin/sleep", "100000")
		fp, err := tc.c.SoakExecs(tc.ctx, tg.runtime, tc.id, execs, every)
		if err != nil {
			t.Fatal(err)
		}
		for i, f := range fp {
			t.Logf("%s after %d execs: %s", tg.name(), i*every, f)
		}
		warm, last := fp[1], fp[len(fp)-1]
		// Go keeps a thread for every syscall it ever had blocked at
		// once, so one burst raises the count for good (6 to 8 seen
		// here); a leak grows it with every exec, by hundreds here.
		if last.FDs > warm.FDs || last.Threads > warm.Threads+2 {
			t.Errorf("shim grew from %s after %d execs to %s after %d", warm, every, last, execs)
		}
		if grown := last.Memory.AnonymousKiB - warm.Memory.AnonymousKiB; grown > memBoundKiB {
			t.Errorf("shim's anonymous memory grew by %d KiB from exec %d to %d (bound %d KiB)", grown, every, execs, memBoundKiB)
		}
	})
}
