package cri

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/minishim/containerd-shim-mini-v2/integration"
)

// hostTmpfs makes a fresh directory on the host with a small tmpfs on it,
// made shared when shared is set: the CRI wants the mount holding a
// propagating hostPath to be shared (bidirectional) or shared or a slave
// (host to container), and / is private here. Call it before runPod: the
// cleanup it registers unmounts everything under the directory (also what
// a container propagated there), deepest first, and must run once the pod
// is gone.
func hostTmpfs(t *testing.T, label string, shared bool) string {
	t.Helper()
	dir, err := os.MkdirTemp(suite.Dir, label+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unmountAll(t, dir) })
	if err := mountTmpfs(dir, "minicri-"+label); err != nil {
		t.Fatal(err)
	}
	if shared {
		if err := syscall.Mount("", dir, "", syscall.MS_SHARED, ""); err != nil {
			t.Fatalf("make %s shared: %v", dir, err)
		}
	}
	return dir
}

// mountTmpfs mounts a 1 MiB tmpfs named source (the name shows in
// mountinfo, so a mount is recognised where it propagated to) on dir,
// creating dir first.
func mountTmpfs(dir, source string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("mount tmpfs: %w", err)
	}
	if err := syscall.Mount(source, dir, "tmpfs", 0, "size=1m"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	return nil
}

// unmountAll unmounts everything at or below dir, deepest first, then
// removes dir once nothing is mounted there any more. A mount that will
// not go is an error of the case: something still holds it.
func unmountAll(t *testing.T, dir string) {
	mounts, err := integration.MountsUnder(dir)
	if err != nil {
		t.Error(err)
		return
	}
	for _, m := range slices.Backward(mounts) {
		if err := syscall.Unmount(m, 0); err != nil {
			t.Errorf("unmount %s: %v; detaching it", m, err)
			_ = syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
	if left, err := integration.MountsUnder(dir); err != nil || len(left) > 0 {
		t.Errorf("mounts left under %s: %v %v", dir, left, err)
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Error(err)
	}
}

// hostMount finds the host's mount at path, if there is one.
func hostMount(t *testing.T, path string) (integration.Mount, bool) {
	t.Helper()
	mounts, err := integration.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Clean(path)
	var found integration.Mount
	ok := false
	// The last one wins: it is on top.
	for _, m := range mounts {
		if m.MountPoint == path {
			found, ok = m, true
		}
	}
	return found, ok
}

// hostMountinfo is the host's raw mountinfo lines for mount points at or
// below dir, with the propagation fields Mounts leaves out.
func hostMountinfo(t *testing.T, dir string) string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
