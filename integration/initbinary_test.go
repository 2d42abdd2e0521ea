package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Without the init binary beside it, the shim starts container processes
// from its own binary, in its "init" mode: a run and an exec work as with
// it. The suite's other cases run with both binaries installed.
func TestInitBinaryAbsent(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		if tg.runtime != MiniRuntime {
			t.Skip("the init binary is our shim's")
		}
		own, _ := daemonWithBinaries(t, tg, ShimBinaryName(MiniRuntime))

		run := newCase(t, own, "noinitbin")
		if res := run.ctr("", run.runArgs([]string{"--rm"}, "", "/bin/sh", "-c", "echo ran")...); res.ExitCode != 0 || res.Stdout != "ran\n" {
			t.Errorf("run without the init binary:\n%s", res)
		}
		tc := newCase(t, own, "noinitbinexec")
		tc.startDetached("/bin/sleep", "1000")
		if res := tc.exec("e1", "/bin/sh", "-c", "echo execd; exit 3"); res.ExitCode != 3 || strings.TrimSpace(res.Stdout) != "execd" {
			t.Errorf("exec without the init binary:\n%s", res)
		}
	})
}

// A shim starts container processes from the init binary it opened first:
// one replaced on disk under it (an upgrade) does not reach its containers,
// whose execs and whose grouped siblings still start from the build the
// shim was started with.
func TestInitBinaryReplaced(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		if tg.runtime != MiniRuntime {
			t.Skip("the init binary is our shim's")
		}
		own, dir := daemonWithBinaries(t, tg, ShimBinaryName(MiniRuntime), InitBinaryName)
		group := []string{"--annotation", "io.containerd.mini.v2.shim-group=namespace"}

		first := newCase(t, own, "initbinold")
		first.startDetachedArgs(first.runArgs(append([]string{"--detach"}, group...), "", "/bin/sleep", "1000"))
		// What `install` does: a new file in the old one's place.
		broken := filepath.Join(dir, InitBinaryName+".new")
		if err := os.WriteFile(broken, []byte("#!/bin/sh\necho replaced >&2\nexit 1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(broken, filepath.Join(dir, InitBinaryName)); err != nil {
			t.Fatal(err)
		}
		if res := first.exec("e1", "/bin/sh", "-c", "echo still"); res.ExitCode != 0 || strings.TrimSpace(res.Stdout) != "still" {
			t.Errorf("exec after the init binary was replaced:\n%s", res)
		}
		// Another container of the group: the same shim, so the same build.
		second := newCase(t, own, "initbinsib")
		if res := second.ctr("", second.runArgs(append([]string{"--rm"}, group...), "", "/bin/sh", "-c", "echo sibling")...); res.ExitCode != 0 || res.Stdout != "sibling\n" {
			t.Errorf("a container of the same shim after the init binary was replaced:\n%s", res)
		}
	})
}

// daemonWithBinaries starts a containerd of tg's version of its own whose
// shim directory (returned) holds copies of the suite's binaries of these
// names and nothing else; it is stopped when the test ends.
func daemonWithBinaries(t *testing.T, tg target, names ...string) (target, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	dir := t.TempDir()
	for _, name := range names {
		src, err := filepath.EvalSymlinks(filepath.Join(suite.ShimDir, name))
		if err != nil {
			t.Skipf("no %s beside the suite's shim: %v", name, err)
		}
		if err := copyFile(src, filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return ownDaemonIn(ctx, t, tg, dir), dir
}
