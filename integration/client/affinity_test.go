package client

import (
	"runtime"
	"testing"

	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/minishim/containerd-shim-mini-v2/integration"
)

// Issue 8: process.execCPUAffinity of an exec (which ctr cannot set): the
// exec runs on its final cpus, read from the host.
func TestExecCPUAffinity(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs two cpus")
	}
	forEachTarget(t, func(t *testing.T, tg target) {
		if tg.runtime != integration.MiniRuntime {
			t.Skip("Debian's runc 1.1 ignores execCPUAffinity (runc 1.2+ applies it)")
		}
		tc := newCase(t, tg, "affinity")
		s := tc.start(cio.NullIO, oci.WithProcessArgs("/bin/sleep", "1000"))
		var out syncBuffer
		ep := tc.execProcess(s, "aff", outputTo(&out), func(p *specs.Process) {
			p.Args = []string{"/bin/sleep", "1000"}
			p.ExecCPUAffinity = &specs.CPUAffinity{Initial: "0", Final: "1"}
		})
		if ep.err != nil {
			t.Fatalf("exec: %v", ep.err)
		}
		got, err := integration.ProcStatusField(int(ep.proc.Pid()), "Cpus_allowed_list")
		if err != nil {
			t.Fatal(err)
		}
		if got != "1" {
			t.Errorf("exec runs on cpus %q, want 1 (execCPUAffinity.final)", got)
		}
		ctx, cancel := tc.callCtx()
		defer cancel()
		if err := ep.proc.Kill(ctx, 9); err != nil {
			t.Fatal(err)
		}
		waitExit(t, "exec", ep.exit)
		if _, err := ep.proc.Delete(ctx); err != nil {
			t.Fatal(err)
		}
	})
}
