package client

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/minishim/containerd-shim-mini-v2/integration"
)

// Issue 9: runc-v2's options as the Go client sends them (WithRuntime with
// the runc options type), to any runtime. NoNewKeyring keeps the shim's
// session keyring, where by default a container gets its own,
// "_ses.<id>"; with NoPivotRoot the root is moved into place instead of
// pivoted (the old root stays mounted underneath, hidden: nothing a
// process in the container, or one that joins its mount namespace, can
// list), and the container runs.
func TestClientRuncOptions(t *testing.T) {
	cases := []struct {
		name     string
		opts     *options.Options
		wantRing bool
	}{
		{"defaults", nil, true},
		{"no-new-keyring", &options.Options{NoNewKeyring: true}, false},
		{"no-pivot-root", &options.Options{NoPivotRoot: true}, true},
	}
	forEachTarget(t, func(t *testing.T, tg target) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				tc := newCase(t, tg, c.name)
				var out syncBuffer
				var runtimeOpts any
				if c.opts != nil {
					runtimeOpts = c.opts
				}
				tc.startWithOptions(runtimeOpts, outputTo(&out),
					oci.WithProcessArgs("/bin/sh", "-c", "grep -o ' _ses[.a-z0-9-]*' /proc/keys; ls /bin/busybox; echo done; sleep 1000"),
					withoutMaskedPath("/proc/keys"))
				out.waitFor("done", 10*time.Second)
				words := strings.Fields(out.String())
				if !slices.Contains(words, "/bin/busybox") || !slices.Contains(words, "done") {
					t.Fatalf("the container did not run in its rootfs:\n%s", out.String())
				}
				hasRing := slices.Contains(words, "_ses."+tc.id)
				if hasRing != c.wantRing {
					t.Errorf("session keyring _ses.%s in /proc/keys: %v, want %v:\n%s", tc.id, hasRing, c.wantRing, out.String())
				}
			})
		}
	})
}

// withoutMaskedPath unmasks path (the client masks /proc/keys).
func withoutMaskedPath(path string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		if s.Linux != nil {
			s.Linux.MaskedPaths = slices.DeleteFunc(s.Linux.MaskedPaths, func(p string) bool { return p == path })
		}
		return nil
	}
}

// Issue 9: runc-v2's ShimCgroup (the shim daemon runs in that cgroup, which
// must exist) and IoUid/IoGid (owner of the process's stdio pipes).
func TestClientRuncOptionsShimCgroupAndIo(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		roots, err := integration.CgroupRoots()
		if err != nil {
			t.Fatal(err)
		}
		shimCg := "/" + integration.DefaultNamespace + "/shimcg-" + tg.d.version.Tag() + "-" + integration.RuntimeTag(tg.runtime) + "-" + integration.RandomSuffix()
		for _, r := range roots {
			if err := os.MkdirAll(filepath.Join(r, shimCg), 0o755); err != nil {
				t.Fatal(err)
			}
			// A v1 cpuset cgroup takes no process before it has cpus and
			// memory nodes (copied down from the root).
			if filepath.Base(r) == "cpuset" {
				for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
					v, err := os.ReadFile(filepath.Join(r, f))
					if err != nil {
						t.Fatal(err)
					}
					for _, d := range []string{filepath.Dir(shimCg), shimCg} {
						p := filepath.Join(r, d, f)
						if cur, _ := os.ReadFile(p); strings.TrimSpace(string(cur)) == "" {
							if err := os.WriteFile(p, v, 0o644); err != nil {
								t.Fatal(err)
							}
						}
					}
				}
			}
		}
		// Registered first, so it runs last: once the shim has gone.
		t.Cleanup(func() {
			for _, r := range roots {
				dir := filepath.Join(r, shimCg)
				deadline := time.Now().Add(10 * time.Second)
				for err := os.Remove(dir); err != nil && !os.IsNotExist(err) && time.Now().Before(deadline); err = os.Remove(dir) {
					time.Sleep(50 * time.Millisecond)
				}
				if _, err := os.Stat(dir); err == nil {
					t.Errorf("cgroup %s still there (the shim did not leave?)", dir)
				}
			}
		})
		tc := newCase(t, tg, "shimcg")
		var out syncBuffer
		tc.startWithOptions(&options.Options{ShimCgroup: shimCg, IoUid: 4321, IoGid: 4322}, outputTo(&out),
			oci.WithProcessArgs("/bin/sh", "-c", "stat -L -c %u:%g /proc/self/fd/1; echo done; sleep 1000"))
		out.waitFor("done", 10*time.Second)
		want := "4321:4322"
		if tg.runtime == integration.RuncRuntime {
			// runc-v2 (go-runc's pipes) leaves stdout's owner root and
			// takes only the group.
			want = "0:4322"
		}
		if got := strings.Fields(out.String()); len(got) < 1 || got[0] != want {
			t.Errorf("stdout pipe owned by %q, want %s (IoUid:IoGid)", out.String(), want)
		}
		p, ok := tc.c.ShimProcess(tg.runtime, tc.id)
		if !ok {
			t.Fatalf("no shim process serves %s", tc.id)
		}
		if cgs := p.Cgroups(); !slices.ContainsFunc(cgs, func(c string) bool { return c == shimCg }) {
			t.Errorf("shim %d is in cgroups %v, want %s (ShimCgroup)", p.Pid, cgs, shimCg)
		}
	})
}

// runc's options that name a sandbox's task API are not implemented here:
// the task is refused, naming them, and nothing is left.
func TestClientRuncOptionsTaskAPIRefused(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		if tg.runtime != integration.MiniRuntime {
			t.Skip("runc-v2 serves the task API there")
		}
		tc := newCase(t, tg, "taskapi")
		ctx, cancel := tc.callCtx()
		defer cancel()
		cont, err := tc.client.NewContainer(ctx, tc.id,
			containerd.WithRuntime(tg.runtime, &options.Options{TaskApiAddress: "unix:///run/nowhere.sock", TaskApiVersion: 3}),
			containerd.WithNewSpec(oci.WithRootFSPath(suite.Rootfs), oci.WithRootFSReadonly(), oci.WithProcessArgs("/bin/true")))
		if err != nil {
			t.Fatalf("new container %s: %v", tc.id, err)
		}
		s := &started{container: cont}
		t.Cleanup(func() { tc.remove(s) })
		task, err := cont.NewTask(ctx, cio.NullIO)
		if err == nil {
			s.task = task
			t.Fatalf("a task with TaskApiAddress set was created")
		}
		if !strings.Contains(err.Error(), "TaskApiAddress") {
			t.Errorf("the refusal should name TaskApiAddress: %v", err)
		}
		t.Logf("%s: %s: %v", tg.name(), classOf(err), err)
	})
}
