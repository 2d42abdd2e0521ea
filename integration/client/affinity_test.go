package client

import (
	"runtime"
	"testing"
	"time"

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
		ctx, cancel := tc.callCtx()
		defer cancel()
		spec, err := s.container.Spec(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pspec := *spec.Process
		pspec.Args = []string{"/bin/sleep", "1000"}
		pspec.ExecCPUAffinity = &specs.CPUAffinity{Initial: "0", Final: "1"}
		var out syncBuffer
		p, err := s.task.Exec(ctx, "aff", &pspec, outputTo(&out))
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
		got, err := integration.ProcStatusField(int(p.Pid()), "Cpus_allowed_list")
		if err != nil {
			t.Fatal(err)
		}
		if got != "1" {
			t.Errorf("exec runs on cpus %q, want 1 (execCPUAffinity.final)", got)
		}
		if err := p.Kill(ctx, 9); err != nil {
			t.Fatal(err)
		}
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Fatal("exec did not exit")
		}
		if _, err := p.Delete(ctx); err != nil {
			t.Fatal(err)
		}
	})
}
