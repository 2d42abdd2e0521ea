package integration

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Issue 9: one runtime-v2 group annotation (io.containerd.runc.v2.group)
// in one namespace, used with both runtimes: each container must be served
// by a shim of its own runtime, whichever started first. Both runtimes'
// shims named the socket of a group alike, so the second start found the
// first's live socket and containerd drove the container through the other
// runtime's shim.
func TestGroupSocketApartFromRunc(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		if tg.runtime != MiniRuntime {
			t.Skip("pairs this runtime with runc-v2")
		}
		for _, order := range [][]string{{RuncRuntime, MiniRuntime}, {MiniRuntime, RuncRuntime}} {
			t.Run(ShortRuntime(order[0])+"-first", func(t *testing.T) {
				group := "grp-" + tg.d.version.Tag() + "-" + RandomSuffix()
				// runc-v2 leaves its group shim's sockets behind when the
				// shim exits (its debug socket too, with containerd 2.4's
				// build); ours removes its own, and that is checked with
				// the case.
				t.Cleanup(func() {
					if err := RemoveRuncGroupSockets(tg.d.c, group, t.Logf); err != nil {
						t.Error(err)
					}
				})
				var cases []*tcase
				for _, rt := range order {
					tc := newCase(t, target{d: tg.d, runtime: rt}, "grp"+RuntimeTag(rt))
					tc.startDetachedArgs(tc.specArgs([]string{"--detach"}, func(s *specs.Spec) {
						if s.Annotations == nil {
							s.Annotations = map[string]string{}
						}
						s.Annotations["io.containerd.runc.v2.group"] = group
					}, "/bin/sleep", "1000"))
					cases = append(cases, tc)
				}
				for i, tc := range cases {
					if _, ok := tc.c.ShimProcess(order[i], tc.id); !ok {
						t.Errorf("%s's container %s is not served by a %s", order[i], tc.id, ShimBinaryName(order[i]))
					}
					if res := tc.exec("e1", "/bin/sh", "-c", "echo in-"+tc.id); res.ExitCode != 0 || !strings.Contains(res.Stdout, "in-"+tc.id) {
						t.Errorf("exec into %s: %s", tc.id, res)
					}
				}
			})
		}
	})
}
