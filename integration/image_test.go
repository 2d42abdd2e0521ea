package integration

import (
	"strings"
	"testing"
)

// Case 6: a container from an image gets its rootfs as snapshot mounts
// (overlayfs) that the shim mounts and unmounts, and the image's Env and
// Cmd reach the process.
func TestImage(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		t.Run("command", func(t *testing.T) {
			tc := newCase(t, tg, "img")
			res := tc.ctr("", tc.runArgs([]string{"--rm"}, testImage, "/bin/sh", "-c", "echo img")...)
			if res.ExitCode != 0 || res.Stdout != "img\n" {
				t.Fatalf("want stdout img and exit code 0:\n%s", res)
			}
			tc.lifecycle(0)
			if res := tc.ctr("", "snapshots", "list"); strings.Contains(res.Stdout, tc.id) {
				t.Errorf("snapshot of %s left:\n%s", tc.id, res)
			}
		})
		t.Run("default-cmd", func(t *testing.T) {
			tc := newCase(t, tg, "imgcmd")
			res := tc.ctr("", tc.runArgs([]string{"--rm"}, testImage)...)
			if res.ExitCode != 0 || res.Stdout != testImageCmdOK {
				t.Fatalf("want stdout %q and exit code 0:\n%s", testImageCmdOK, res)
			}
			tc.lifecycle(0)
		})
	})
}
