package cri

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/minishim/containerd-shim-mini-v2/integration"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// podUserns is what a kubelet sends for a hostUsers: false pod: a user
// namespace for the pod (mode POD) with one mapping of 65536 ids.
func podUserns(uids, gids []*runtime.IDMapping) func(*runtime.PodSandboxConfig) {
	return func(c *runtime.PodSandboxConfig) {
		c.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: uids, Gids: gids}
	}
}

var usernsMapping = []*runtime.IDMapping{{ContainerId: 0, HostId: 100000, Length: 65536}}

// Issue 10: Kubernetes user namespaces (hostUsers: false) through
// containerd 2.4's CRI with RuntimeClass handler mini. The CRI lets the
// handler run them (its Status says so, from the features report); the
// pod's container sees the pod's mapping, its root is host 100000, its
// image's files (an idmapped rootfs) are root's inside, and what its root
// writes into a host-path volume is host 100000's. runc-v2 is held to
// the same where its runc can.
func TestCRIUserNamespace(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, tg target) {
		features := suite.handlers[tg.handler].GetFeatures()
		if tg.runtime == integration.MiniRuntime && !features.GetUserNamespaces() {
			t.Errorf("the CRI's Status does not report user namespaces for handler %s: %v", tg.handler, features)
		}
		p, err := runPodWith(t, tg, "userns", podUserns(usernsMapping, usernsMapping))
		if err != nil && strings.Contains(err.Error(), "cannot be idmapped on this kernel") {
			// The cgroup v2 guest's /tmp, where the snapshots live, is
			// an overlay over 9p: the refusal is the one that says so.
			t.Skipf("the image layers' filesystem cannot be idmapped here: %v", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		vol := integration.SharedDir(t, suite.Dir, "vol-", 0o777)
		c, err := p.create("app", &runtime.ContainerConfig{Mounts: []*runtime.Mount{{ContainerPath: "/vol", HostPath: vol}}})
		if err == nil {
			err = c.tryStart()
		}
		if err != nil && tg.runtime != integration.MiniRuntime {
			// Debian's runc 1.1 reports no idmapped mounts, which the
			// CRI requires for the container's /etc/hosts.
			t.Skipf("runc-v2 with Debian's runc 1.1: %v", err)
		}
		if err != nil {
			t.Fatalf("%v\n%s", err, suite.c.LogAbout(p.id, 40))
		}
		out := c.mustSucceed("cat /proc/self/uid_map /proc/self/gid_map; stat -c %u:%g /bin/busybox; id -u; touch /vol/by-root")
		fields := strings.Fields(out)
		want := []string{"0", "100000", "65536", "0", "100000", "65536", "0:0", "0"}
		if strings.Join(fields, " ") != strings.Join(want, " ") {
			t.Errorf("in the container: %q, want %q (maps, the image's owner, id -u)", fields, want)
		}
		if st := c.statusFields("1", "Uid"); !strings.HasPrefix(st["Uid"], "0\t") {
			t.Errorf("container init's Uid inside: %q", st["Uid"])
		}
		fi, err := os.Stat(filepath.Join(vol, "by-root"))
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 100000 || st.Gid != 100000 {
			t.Errorf("the container root's file is %d:%d on the host, want 100000:100000", st.Uid, st.Gid)
		}
	})
}

// Issue 10: the user namespace requests the CRI refuses for any runtime
// (more than one mapping, modes CONTAINER and TARGET) fail RunPodSandbox;
// one that maps no container id 0 reaches the runtime, which refuses it
// naming the mappings.
func TestCRIUserNamespaceInvalid(t *testing.T) {
	two := []*runtime.IDMapping{{ContainerId: 0, HostId: 100000, Length: 1000}, {ContainerId: 1000, HostId: 200000, Length: 1000}}
	noRoot := []*runtime.IDMapping{{ContainerId: 1, HostId: 100000, Length: 65536}}
	cases := []struct {
		name   string
		mutate func(*runtime.PodSandboxConfig)
		want   string
		mini   bool // the runtime's error, not the CRI's
	}{
		{"two-mappings", podUserns(two, two), "only one mapping line supported", false},
		{"mode-container", func(c *runtime.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtime.UserNamespace{Mode: runtime.NamespaceMode_CONTAINER, Uids: usernsMapping, Gids: usernsMapping}
		}, `unsupported user namespace mode: "CONTAINER"`, false},
		{"mode-target", func(c *runtime.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtime.UserNamespace{Mode: runtime.NamespaceMode_TARGET, Uids: usernsMapping, Gids: usernsMapping}
		}, `unsupported user namespace mode: "TARGET"`, false},
		{"root-unmapped", podUserns(noRoot, noRoot), "linux.uidMappings does not map id 0", true},
	}
	forEachRuntime(t, func(t *testing.T, tg target) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				_, err := runPodWith(t, tg, c.name, c.mutate)
				if err == nil {
					t.Fatal("RunPodSandbox succeeded")
				}
				if (!c.mini || tg.runtime == integration.MiniRuntime) && !strings.Contains(err.Error(), c.want) {
					t.Errorf("RunPodSandbox: %v; want an error with %q", err, c.want)
				}
				t.Logf("%s: %s", tg.handler, strings.SplitN(err.Error(), "\n", 2)[0])
			})
		}
	})
}
