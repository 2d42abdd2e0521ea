package integration

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// specArgs writes the daemon's default spec, changed by mutate, for the
// case's container running cmd, and returns `ctr run --config` arguments
// with flags. The container gets a tmpfs on /tmp, so what it writes there
// does not change the shared rootfs.
func (tc *tcase) specArgs(flags []string, mutate func(*specs.Spec), cmd ...string) []string {
	tc.t.Helper()
	spec, err := tc.c.DefaultSpec(tc.ctx, suite.rootfs)
	if err != nil {
		tc.t.Fatal(err)
	}
	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev"}})
	spec.Linux.CgroupsPath = tc.c.CgroupsPath(tc.id)
	if mutate != nil {
		mutate(spec)
	}
	path, err := tc.c.WriteSpecAsIs(tc.id, spec, cmd...)
	if err != nil {
		tc.t.Fatal(err)
	}
	args := append([]string{"run", "--runtime", tc.tg.runtime}, flags...)
	return append(args, "--config", path, tc.id)
}

// Issue 8, the rule: a spec field the runtime does not enforce fails
// create with Unimplemented, naming the field; the container never runs
// with less than its spec asks for.
func TestUnenforcedFieldRefused(t *testing.T) {
	cases := []struct {
		name, field string
		mutate      func(*specs.Spec)
	}{
		// Fields ctr 1.6 knows too: it drops the ones it does not from
		// a --config spec.
		{"uid-mappings", "linux.uidMappings", func(s *specs.Spec) {
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
		}},
		{"gid-mappings", "linux.gidMappings", func(s *specs.Spec) {
			s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
		}},
	}
	forEachTarget(t, func(t *testing.T, tg target) {
		if tg.runtime != MiniRuntime {
			t.Skip("what the rule refuses is what this runtime lacks")
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				tc := newCase(t, tg, c.name)
				tc.ctrFails(tc.specArgs([]string{"--rm"}, c.mutate, "/bin/true"), c.field, "not supported")
			})
		}
	})
}
