package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/minishim/containerd-shim-mini-v2/integration"
)

func TestParseArgs(t *testing.T) {
	o, err := parseArgs([]string{"-namespace", "ns", "-address", "/c.sock", "-publish-binary", "/bin/containerd",
		"-id", "x", "-bundle", "/b", "-debug", "start"})
	if err != nil || o.namespace != "ns" || o.address != "/c.sock" || o.id != "x" || o.bundle != "/b" || o.action != "start" {
		t.Fatalf("start flags: %+v, %v", o, err)
	}
	o, err = parseArgs([]string{"--namespace=ns", "-id", "x", "-some-new-flag", "delete"})
	if err != nil || o.namespace != "ns" || o.id != "x" || o.action != "delete" {
		t.Fatalf("delete flags: %+v, %v", o, err)
	}
	if o, err = parseArgs([]string{"-id", "x", "-socket", "/s"}); err != nil || o.action != "" || o.socket != "/s" {
		t.Fatalf("serve flags: %+v, %v", o, err)
	}
	if _, err = parseArgs([]string{"-id", "x", "bogus"}); err == nil {
		t.Fatal("unknown action accepted")
	}
}

// TestFloorAgainstContainerd runs containers through the floor shim on each
// containerd the harness knows (FLOOR_CONTAINERD, default 1.6,2.4): `ctr run
// --rm` (timed, FLOOR_RUNS times, default 10), and `run -d`, exec, kill,
// `t rm -f` and `c rm`, then checks that no floor daemon and no socket of
// it is left. Needs root and the containerd binaries; skipped otherwise.
func TestFloorAgainstContainerd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts containerd")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go tool to build the shim")
	}
	ctx := context.Background()
	dir := t.TempDir()
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, name), ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the floor shim: %v\n%s", err, out)
	}
	rootfs := filepath.Join(dir, "rootfs")
	if err := integration.BuildBusyboxRootfs(ctx, rootfs); err != nil {
		t.Skip(err)
	}
	// The socket dir is the shim's, as /run/containerd/s is containerd's:
	// left in place unless this test made it and it ends up empty.
	if _, err := os.Stat(defaultSocketDir); errors.Is(err, os.ErrNotExist) {
		t.Cleanup(func() { os.Remove(defaultSocketDir) })
	}
	runs := 10
	if n := os.Getenv("FLOOR_RUNS"); n != "" {
		fmt.Sscan(n, &runs)
	}
	for _, vname := range integration.ListFromEnv("FLOOR_CONTAINERD", "1.6,2.4") {
		t.Run(vname, func(t *testing.T) {
			v, err := integration.LookupVersion(vname)
			if err != nil {
				t.Fatal(err)
			}
			if err := v.Check(); err != nil {
				t.Skip(err)
			}
			floorOn(t, ctx, v, dir, rootfs, runs)
		})
	}
}

func floorOn(t *testing.T, ctx context.Context, v integration.Version, shimDir, rootfs string, runs int) {
	c, err := integration.StartContainerd(ctx, integration.Options{Version: v, ShimDir: shimDir, LogLevel: "info"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		// Stop reports (and kills) a shim still serving c as a leak.
		if err := c.Stop(context.Background()); err != nil {
			t.Error(err)
		}
		integration.RemoveNamespaceCgroups(c.Namespace)
	}()
	ctr := func(args ...string) integration.Result {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		res := c.Ctr(cctx, nil, args...)
		if res.ExitCode != 0 {
			t.Fatalf("%s\n%s", res, c.LogTail(20))
		}
		return res
	}
	var ids []string
	var times []time.Duration
	for i := range runs + 1 {
		id := fmt.Sprintf("floor%s-%d", v.Tag(), i)
		ids = append(ids, id)
		res := ctr("run", "--rm", "--runtime", runtimeName, "--rootfs", rootfs, id, "/bin/true")
		if i > 0 { // the first one warms up
			times = append(times, res.Duration)
		}
	}
	slices.Sort(times)
	t.Logf("containerd %s: ctr run --rm through the floor: median %s over %d runs (min %s, max %s)",
		v.Name, times[len(times)/2].Round(10*time.Microsecond), len(times), times[0].Round(10*time.Microsecond), times[len(times)-1].Round(10*time.Microsecond))

	id := "floor" + v.Tag() + "-d"
	ids = append(ids, id)
	ctr("run", "-d", "--runtime", runtimeName, "--rootfs", rootfs, id, "/bin/sleep", "1000")
	ctr("t", "exec", "--exec-id", "x", id, "/bin/true")
	ctr("t", "kill", id)
	ctr("t", "rm", "-f", id)
	ctr("c", "rm", id)

	// The daemons exit right after containerd hangs up on their Shutdown.
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := integration.ProcessesMatching(func(p integration.Proc) bool {
			return p.Name() == name && p.HasArgPair("-address", c.Address)
		})
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("floor daemons left: %v", left)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	// containerd 2.x names a socket dir in its bootstrap params
	// (/run/containerd/s), which the floor honours.
	for _, id := range ids {
		for _, dir := range []string{defaultSocketDir, "/run/containerd/s"} {
			p, err := socketPath(dir, c.Address, c.Namespace, id)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("socket of %s left: %s (%v)", id, p, err)
				os.Remove(p)
			}
		}
	}
}
