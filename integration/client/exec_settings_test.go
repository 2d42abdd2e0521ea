package client

import (
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/minishim/containerd-shim-mini-v2/integration"
)

// An exec's own process settings, as a probe's or `kubectl exec`'s come:
// the container's process with another user, groups, umask, capabilities,
// no_new_privs, rlimits, cwd and env. This runtime applies them in the
// preamble's C (nsexec/process.c); runc-v2 must agree on every line but
// the umask and the soft open-files limit.
func TestExecProcessSettings(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		tc := newCase(t, tg, "execset")
		s := tc.start(cio.NullIO, oci.WithProcessArgs("/bin/sleep", "1000"))
		umask := uint32(0o027)
		caps := []string{"CAP_KILL", "CAP_NET_BIND_SERVICE"}
		var out syncBuffer
		ep := tc.execProcess(s, "settings", outputTo(&out), func(p *specs.Process) {
			p.Args = []string{"/bin/sh", "-c", `id -u; id -g; id -G; umask; pwd; ulimit -Sn; ulimit -Hn; echo "env $FOO"
grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status`}
			p.Env = append(p.Env, "FOO=bar")
			p.Cwd = "/bin"
			p.User = specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{5, 7}, Umask: &umask}
			p.Capabilities = &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps, Inheritable: caps,
				Ambient: []string{"CAP_NET_BIND_SERVICE"},
			}
			p.NoNewPrivileges = true
			p.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 200, Hard: 300}}
		})
		if ep.err != nil {
			t.Fatalf("exec: %v", ep.err)
		}
		if st := waitExit(t, "exec", ep.exit); st.ExitCode() != 0 {
			t.Errorf("exec exited with %d:\n%s", st.ExitCode(), out.String())
		}
		ctx, cancel := tc.callCtx()
		defer cancel()
		if _, err := ep.proc.Delete(ctx); err != nil {
			t.Fatal(err)
		}
		// The output is complete once Wait returned (TaskExit waits for it).
		got := out.String()
		want := []string{
			"1000\n1000\n1000 5 7\n", "\n/bin\n", "\n300\nenv bar\n",
			"CapInh:\t0000000000000420", "CapPrm:\t0000000000000400", "CapEff:\t0000000000000400",
			"CapBnd:\t0000000000000420", "CapAmb:\t0000000000000400", "NoNewPrivs:\t1",
		}
		if tg.runtime == integration.MiniRuntime {
			// The exec's own umask, as the spec says and crun does. runc
			// 1.1 (Debian's) leaves an exec at 0022; runc 1.2 gives it
			// the container's. Its soft RLIMIT_NOFILE, which Debian's
			// runc 1.1 sometimes leaves at the hard limit (the Go runtime
			// in its init raises it).
			want = append(want, "7\n0027\n/bin\n200\n300\n")
		}
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("exec output lacks %q:\n%s", w, got)
			}
		}
	})
}
