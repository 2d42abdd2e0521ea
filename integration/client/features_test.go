package client

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/minishim/containerd-shim-mini-v2/integration"
)

// Issue 8: the runtime's OCI features document, as containerd's Go client
// reads it through the daemon (`shim -info`): containerd's CRI decides
// from it what a RuntimeClass may use, so it must list what works (rro,
// seccomp, user and time namespaces, idmapped mounts) and nothing that
// does not (netDevices, intelRdt).
func TestRuntimeFeatures(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		if tg.d.version.Name == "1.6" {
			t.Skip("containerd 1.6 has no runtime introspection")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		info, err := tg.d.client.RuntimeInfo(ctx, tg.runtime, nil)
		if err != nil {
			t.Fatalf("RuntimeInfo(%s): %v", tg.runtime, err)
		}
		f, ok := info.Features.(*features.Features)
		if !ok || f == nil {
			t.Fatalf("RuntimeInfo(%s).Features is %T, want *features.Features", tg.runtime, info.Features)
		}
		t.Logf("%s: %s %s, mount options %v, namespaces %v", tg.runtime, info.Name, info.Version.Version, f.MountOptions, f.Linux.Namespaces)
		for _, o := range []string{"rro", "rbind", "rshared", "ro", "nosuid"} {
			if !slices.Contains(f.MountOptions, o) {
				t.Errorf("mount options lack %q: %v", o, f.MountOptions)
			}
		}
		if f.Linux == nil || f.Linux.Seccomp == nil || f.Linux.Seccomp.Enabled == nil || !*f.Linux.Seccomp.Enabled {
			t.Fatalf("seccomp is not reported enabled: %+v", f.Linux)
		}
		for _, a := range []string{"SCMP_ACT_ERRNO", "SCMP_ACT_NOTIFY", "SCMP_ACT_KILL_PROCESS"} {
			if !slices.Contains(f.Linux.Seccomp.Actions, a) {
				t.Errorf("seccomp actions lack %s: %v", a, f.Linux.Seccomp.Actions)
			}
		}
		if tg.runtime != integration.MiniRuntime {
			return
		}
		// What containerd's CRI requires of a runtime before it runs a
		// hostUsers: false pod's containers (issue 10).
		for _, ns := range []string{"user", "time"} {
			if !slices.Contains(f.Linux.Namespaces, ns) {
				t.Errorf("%s namespaces work but are not reported: %v", ns, f.Linux.Namespaces)
			}
		}
		if m := f.Linux.MountExtensions; m == nil || m.IDMap == nil || m.IDMap.Enabled == nil || !*m.IDMap.Enabled {
			t.Errorf("idmapped mounts work but are not reported enabled: %+v", m)
		}
		for _, o := range []string{"idmap", "ridmap"} {
			if !slices.Contains(f.MountOptions, o) {
				t.Errorf("mount options lack %q: %v", o, f.MountOptions)
			}
		}
	})
}
