package integration

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Issue 8: process.scheduler, process.ioPriority, linux.personality and
// linux.memoryPolicy hold for init and for an exec, read from the host.
// ctr 1.6 drops the fields its runtime-spec does not know (all but
// personality) from a --config spec, so there only personality is checked.
func TestProcessAttributes(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		if tg.runtime == RuncRuntime {
			// Debian's runc 1.1 skips all four without a word; runc 1.2+
			// applies them.
			t.Skip("runc before 1.2 ignores these fields")
		}
		newFields := tg.d.version.Name != "1.6"
		tc := newCase(t, tg, "procattrs")
		initPid := tc.startDetachedArgs(tc.specArgs([]string{"--detach"}, func(s *specs.Spec) {
			s.Linux.Personality = &specs.LinuxPersonality{Domain: specs.PerLinux32}
			s.Process.Scheduler = &specs.Scheduler{Policy: specs.SchedBatch, Nice: 5}
			s.Process.IOPriority = &specs.LinuxIOPriority{Class: specs.IOPRIO_CLASS_IDLE}
			s.Linux.MemoryPolicy = &specs.LinuxMemoryPolicy{Mode: specs.MpolBind, Nodes: "0"}
		}, "/bin/sleep", "1000"))
		check := func(who, pid string) {
			if got := readProcFile(t, pid, "personality"); got != "00000008" {
				t.Errorf("%s: personality %q, want 00000008 (PER_LINUX32)", who, got)
			}
			if !newFields {
				return
			}
			stat := readProcFile(t, pid, "stat")
			fields := strings.Fields(stat[strings.LastIndexByte(stat, ')')+2:])
			// Fields 19 (nice) and 41 (policy), counted from 1 with pid and comm.
			if nice, policy := fields[19-3], fields[41-3]; nice != "5" || policy != "3" {
				t.Errorf("%s: nice %s policy %s, want 5 and 3 (SCHED_BATCH)", who, nice, policy)
			}
			if out, err := exec.Command("ionice", "-p", pid).Output(); err != nil || strings.TrimSpace(string(out)) != "idle" {
				t.Errorf("%s: ionice says %q (%v), want idle", who, out, err)
			}
			if maps := readProcFile(t, pid, "numa_maps"); !strings.Contains(maps, " bind:0 ") {
				t.Errorf("%s: numa_maps shows no bind:0 policy:\n%s", who, clip(maps, 300))
			}
		}
		check("init", initPid)
		done := tc.background("", tc.execArgs(nil, "e1", "/bin/sleep", "1000")...)
		check("exec", tc.execPsPid("e1"))
		if res := tc.ctr("", "tasks", "kill", "--exec-id", "e1", "--signal", "SIGKILL", tc.id); res.ExitCode != 0 {
			t.Fatalf("kill exec: %s", res)
		}
		tc.await(done)
	})
}

func readProcFile(t *testing.T, pid, name string) string {
	t.Helper()
	data, err := os.ReadFile("/proc/" + pid + "/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}
