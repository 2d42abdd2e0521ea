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
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		t.Cleanup(cancel)
		shim, err := filepath.EvalSymlinks(filepath.Join(suite.ShimDir, ShimBinaryName(MiniRuntime)))
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(shim)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, ShimBinaryName(MiniRuntime)), data, 0o755); err != nil {
			t.Fatal(err)
		}
		c, err := StartContainerd(ctx, Options{Version: tg.d.version, ShimDir: dir, Keep: suite.Keep})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := c.Stop(context.Background()); err != nil {
				t.Error(err)
			}
		})
		own := target{d: &daemon{version: tg.d.version, c: c}, runtime: tg.runtime}

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
