package integration

import (
	"context"
	"testing"
	"time"
)

// WatchCase registers what every case ends with, whichever suite it is
// in. Cleanups run last-registered first, so: first a check that container
// id left nothing behind and that nothing is mounted on the suite's shared
// rootfs (with the daemon's log lines about the container when the case
// failed), then whatever force is needed so that a broken case does not
// poison the next, then done (say, cancelling the case's context).
// Cleanups the case registers later (an orderly removal) run before both.
func (c *Containerd) WatchCase(t testing.TB, shim, id, sharedRootfs string, done func()) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c.ForceCleanup(ctx, shim, id)
		done()
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, l := range c.WaitNoLeaks(ctx, shim, id, 5*time.Second) {
			// A case that failed half way (say `run --detach` did) is
			// expected to leave its container record; the rest is a leak.
			if l.Kind == "container" && t.Failed() {
				continue
			}
			t.Errorf("leak after %s: %s", id, l)
		}
		// Nothing may be mounted onto the shared rootfs in the host's mount
		// namespace (with parallel cases, the culprit may be another one).
		if mounts, err := MountsUnder(sharedRootfs); err != nil || len(mounts) > 0 {
			t.Errorf("mounts on the shared rootfs after %s: %v %v", id, mounts, err)
		}
		if t.Failed() {
			t.Log(c.LogAbout(id, 80))
		}
	})
}
