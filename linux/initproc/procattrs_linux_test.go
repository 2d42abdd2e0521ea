package initproc

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestProcessAttrsChecked(t *testing.T) {
	tests := []struct {
		name string
		p    specs.Process
		lx   specs.Linux
		want string // "" for valid
	}{
		{name: "batch nice", p: specs.Process{Scheduler: &specs.Scheduler{Policy: specs.SchedBatch, Nice: 5}}},
		{name: "fifo priority", p: specs.Process{Scheduler: &specs.Scheduler{Policy: specs.SchedFIFO, Priority: 10}}},
		{name: "no policy", p: specs.Process{Scheduler: &specs.Scheduler{}}, want: "process.scheduler.policy"},
		{name: "nice out of range", p: specs.Process{Scheduler: &specs.Scheduler{Policy: specs.SchedOther, Nice: 20}}, want: "nice 20"},
		{name: "priority for other", p: specs.Process{Scheduler: &specs.Scheduler{Policy: specs.SchedOther, Priority: 1}}, want: "priority is only"},
		{name: "deadline fields elsewhere", p: specs.Process{Scheduler: &specs.Scheduler{Policy: specs.SchedRR, Runtime: 1}}, want: "SCHED_DEADLINE"},
		{name: "bad sched flag", p: specs.Process{Scheduler: &specs.Scheduler{Policy: specs.SchedOther, Flags: []specs.LinuxSchedulerFlag{"X"}}}, want: "flags"},
		{name: "ioprio", p: specs.Process{IOPriority: &specs.LinuxIOPriority{Class: specs.IOPRIO_CLASS_BE, Priority: 7}}},
		{name: "ioprio class", p: specs.Process{IOPriority: &specs.LinuxIOPriority{Class: "IOPRIO_CLASS_X"}}, want: "process.ioPriority.class"},
		{name: "ioprio priority", p: specs.Process{IOPriority: &specs.LinuxIOPriority{Class: specs.IOPRIO_CLASS_IDLE, Priority: 8}}, want: "outside 0..7"},
		{name: "personality", lx: specs.Linux{Personality: &specs.LinuxPersonality{Domain: specs.PerLinux32}}},
		{name: "personality domain", lx: specs.Linux{Personality: &specs.LinuxPersonality{Domain: "BSD"}}, want: "linux.personality.domain"},
		{name: "personality flags", lx: specs.Linux{Personality: &specs.LinuxPersonality{Domain: specs.PerLinux, Flags: []specs.LinuxPersonalityFlag{"f"}}}, want: "linux.personality.flags"},
		{name: "mempolicy bind", lx: specs.Linux{MemoryPolicy: &specs.LinuxMemoryPolicy{Mode: specs.MpolBind, Nodes: "0", Flags: []specs.MemoryPolicyFlagType{specs.MpolFStaticNodes}}}},
		{name: "mempolicy bind without nodes", lx: specs.Linux{MemoryPolicy: &specs.LinuxMemoryPolicy{Mode: specs.MpolBind}}, want: "at least one node"},
		{name: "mempolicy local with nodes", lx: specs.Linux{MemoryPolicy: &specs.LinuxMemoryPolicy{Mode: specs.MpolLocal, Nodes: "0"}}, want: "must be empty"},
		{name: "mempolicy mode", lx: specs.Linux{MemoryPolicy: &specs.LinuxMemoryPolicy{Mode: "MPOL_X"}}, want: "linux.memoryPolicy.mode"},
		{name: "mempolicy nodes", lx: specs.Linux{MemoryPolicy: &specs.LinuxMemoryPolicy{Mode: specs.MpolPreferred, Nodes: "a-b"}}, want: "linux.memoryPolicy.nodes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckProcessAttrs(&tt.p, &tt.lx)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v; want InvalidArgument naming %q", err, tt.want)
			}
		})
	}
}
