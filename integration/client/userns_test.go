package client

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/minishim/containerd-shim-mini-v2/integration"
)

// Issue 10, through the Go client: oci.WithUserNamespace gives the
// container a user namespace where root is host 100000, and a time
// namespace with a boottime offset of ten days shows in /proc/uptime.
// runc before 1.2 has no time namespaces, so it gets the user namespace
// only.
func TestClientUserTimeNamespaces(t *testing.T) {
	const tenDays = 10 * 24 * 3600
	idmap := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	forEachTarget(t, func(t *testing.T, tg target) {
		timens := tg.runtime == integration.MiniRuntime
		tc := newCase(t, tg, "userns")
		opts := []oci.SpecOpts{
			oci.WithUserNamespace(idmap, idmap),
			oci.WithProcessArgs("/bin/sh", "-c", "echo map $(cat /proc/self/uid_map); echo up $(cut -d. -f1 /proc/uptime); exec sleep 1000"),
		}
		if timens {
			opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.TimeNamespace}),
				func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
					s.Linux.TimeOffsets = map[string]specs.LinuxTimeOffset{"boottime": {Secs: tenDays}}
					return nil
				})
		}
		var out syncBuffer
		s := tc.start(outputTo(&out), opts...)
		if !out.waitFor("up ", 10*time.Second) {
			t.Fatalf("no output from the container: %q", out.String())
		}
		if !strings.Contains(out.String(), "map 0 100000 65536") {
			t.Errorf("the container's uid_map: %q, want 0 100000 65536", out.String())
		}
		uid, err := integration.ProcStatusField(int(s.task.Pid()), "Uid")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(uid, "100000\t") {
			t.Errorf("init is not host uid 100000: Uid: %s", uid)
		}
		if !timens {
			return
		}
		var up int
		for _, line := range strings.Split(out.String(), "\n") {
			if v, ok := strings.CutPrefix(line, "up "); ok {
				up, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		b, _ := os.ReadFile("/proc/uptime")
		hostUp, _ := strconv.Atoi(strings.SplitN(string(b), ".", 2)[0])
		if up < hostUp+tenDays-60 || up > hostUp+tenDays+60 {
			t.Errorf("uptime in the container %d s, on the host %d s: want ten days more", up, hostUp)
		}
	})
}
