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
	spec, err := tc.c.DefaultSpec(tc.ctx, suite.Rootfs)
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
		{"net-devices", "linux.netDevices", func(s *specs.Spec) {
			s.Linux.NetDevices = map[string]specs.LinuxNetDevice{"dummy0": {Name: "eth1"}}
		}},
	}
	forEachTarget(t, func(t *testing.T, tg target) {
		if tg.runtime != MiniRuntime {
			t.Skip("what the rule refuses is what this runtime lacks")
		}
		if tg.d.version.Name == "1.6" {
			// Its runtime-spec predates every field still refused, and
			// ctr drops what it does not know from a --config spec.
			t.Skip("ctr 1.6 drops linux.netDevices")
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				tc := newCase(t, tg, c.name)
				tc.ctrFails(tc.specArgs([]string{"--rm"}, c.mutate, "/bin/true"), c.field, "not supported")
			})
		}
	})
}
