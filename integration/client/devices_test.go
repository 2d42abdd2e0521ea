package client

import (
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/oci"
)

// devicesScript uses the standard devices, makes a node for the first disk
// (8:0) and tries to open it.
const devicesScript = `cat </dev/null && echo null-ok
echo x >/dev/zero && echo zero-ok
head -c 4 /dev/urandom >/dev/full 2>/dev/null; echo full-ok
mknod /dev/mini-sda b 8 0 && echo mknod-ok
head -c 1 /dev/mini-sda >/dev/null || echo open-denied`

// TestClientStandardDevices: the client's default spec denies every device
// in the cgroup and allows none (ctr adds its own list, the client does
// not). As with runc, the standard devices still work and any node may be
// made, but a device outside them cannot be opened.
func TestClientStandardDevices(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		tc := newCase(t, tg, "devs")
		var out syncBuffer
		s := tc.start(outputTo(&out), oci.WithProcessArgs("/bin/sh", "-c", devicesScript))
		select {
		case st := <-s.exit:
			if st.Error() != nil {
				t.Fatalf("wait: %v", st.Error())
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("container did not exit; output so far:\n%s", out.String())
		}
		got := out.String()
		for _, want := range []string{"null-ok", "zero-ok", "full-ok", "mknod-ok", "open-denied"} {
			if !strings.Contains(got, want) {
				t.Errorf("output lacks %q:\n%s", want, got)
			}
		}
		if !strings.Contains(got, "Operation not permitted") {
			t.Errorf("opening 8:0 should fail with EPERM from the device cgroup:\n%s", got)
		}
	})
}
