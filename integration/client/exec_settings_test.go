package client

import (
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/minishim/containerd-shim-mini-v2/integration"
)

// An exec's own process settings, as a probe's or `kubectl exec`'s come:
// the container's process with another user, groups, umask, capabilities,
// no_new_privs, rlimits, cwd and env. This runtime applies them in the
// preamble's C (nsexec/process.c); runc-v2 must agree on every line but
// the umask.
func TestExecProcessSettings(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		tc := newCase(t, tg, "execset")
		s := tc.start(cio.NullIO, oci.WithProcessArgs("/bin/sleep", "1000"))
		ctx, cancel := tc.callCtx()
		defer cancel()
		spec, err := s.container.Spec(ctx)
		if err != nil {
			t.Fatal(err)
		}
		umask := uint32(0o027)
		caps := []string{"CAP_KILL", "CAP_NET_BIND_SERVICE"}
		pspec := *spec.Process
		pspec.Args = []string{"/bin/sh", "-c", `id -u; id -g; id -G; umask; pwd; ulimit -Sn; ulimit -Hn; echo "env $FOO"
grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status`}
		pspec.Env = append(pspec.Env, "FOO=bar")
		pspec.Cwd = "/bin"
		pspec.User = specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{5, 7}, Umask: &umask}
		pspec.Capabilities = &specs.LinuxCapabilities{
			Bounding: caps, Effective: caps, Permitted: caps, Inheritable: caps,
			Ambient: []string{"CAP_NET_BIND_SERVICE"},
		}
		pspec.NoNewPrivileges = true
		pspec.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 200, Hard: 300}}
		var out syncBuffer
		p, err := s.task.Exec(ctx, "settings", &pspec, outputTo(&out))
		if err != nil {
			t.Fatalf("exec: %v", err)
		}
		exited, err := p.Wait(tc.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Start(ctx); err != nil {
			t.Fatalf("start exec: %v", err)
		}
		select {
		case st := <-exited:
			if st.ExitCode() != 0 {
				t.Errorf("exec exited with %d:\n%s", st.ExitCode(), out.String())
			}
		case <-time.After(20 * time.Second):
			t.Fatal("exec did not exit")
		}
		if _, err := p.Delete(ctx); err != nil {
			t.Fatal(err)
		}
		// The output is complete once Wait returned (TaskExit waits for it).
		got := out.String()
		want := []string{
			"1000\n1000\n1000 5 7\n", "\n/bin\n200\n300\nenv bar\n",
			"CapInh:\t0000000000000420", "CapPrm:\t0000000000000400", "CapEff:\t0000000000000400",
			"CapBnd:\t0000000000000420", "CapAmb:\t0000000000000400", "NoNewPrivs:\t1",
		}
		if tg.runtime == integration.MiniRuntime {
			// The exec's own umask, as the spec says and crun does. runc
			// 1.1 (Debian's) leaves an exec at 0022; runc 1.2 gives it
			// the container's.
			want = append(want, "7\n0027\n/bin\n")
		}
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("exec output lacks %q:\n%s", w, got)
			}
		}
	})
}
