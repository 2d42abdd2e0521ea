package integration

import (
	"testing"
)

// Issue 9, no output lost under load (short; `make load` runs 200): 30
// `ctr run --rm` printing 2000 lines each, 10 at a time, under two
// CPU-burning processes: every line arrives, whichever containerd.
func TestNoOutputLostUnderLoad(t *testing.T) {
	if Emulated() {
		t.Skip("load: under emulation the load is the emulator's")
	}
	forEachTarget(t, func(t *testing.T, tg target) {
		tc := newCase(t, tg, "load")
		res, err := tc.c.RunLoad(tc.ctx, tg.runtime, suite.Rootfs, tc.id+"-", 30, 10, 2000, 2)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d runs, %d lost output, %d failed: %v", tg.name(), res.Runs, res.Lossy, res.Failed, res.Examples)
		if res.Lossy > 0 || res.Failed > 0 {
			t.Errorf("%d of %d runs lost output and %d failed: %v", res.Lossy, res.Runs, res.Failed, res.Examples)
		}
	})
}
