package client

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/typeurl/v2"
	"github.com/minishim/containerd-shim-mini-v2/integration"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// updateErrors are the classes a runtime's Update errors reach the client
// with. runc-v2 answers both cases with plain errors (runc's own message
// for a value the kernel refuses; "cannot update a stopped container"),
// which the daemon and the client can only call Unknown. This shim checks
// values before touching the cgroup and refuses a stopped task by state,
// so it names the class.
var updateErrors = map[string]struct{ invalid, stopped errClass }{
	integration.MiniRuntime: {invalid: invalidArgument, stopped: failedPrecondition},
	integration.RuncRuntime: {invalid: unknown, stopped: unknown},
}

// cgroupValue is one control file of the container's cgroup.
type cgroupValue struct {
	controller string // v1 hierarchy; ignored on v2
	file       string
	want       string // after the update
}

// Values TestClientUpdate sets: memory, cpu quota/period and pids.
const (
	updMemory = 48 << 20
	updQuota  = 25000
	updPeriod = 50000 // not the kernel's default 100000: the file must change
	updPids   = 64
)

func updateResources() *specs.LinuxResources {
	mem, quota, period, pids := int64(updMemory), int64(updQuota), uint64(updPeriod), int64(updPids)
	return &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: &mem},
		CPU:    &specs.LinuxCPU{Quota: &quota, Period: &period},
		Pids:   &specs.LinuxPids{Limit: &pids},
	}
}

// updatedFiles are the files updateResources changes, with what they must
// hold afterwards, in the host's cgroup version.
func updatedFiles() []cgroupValue {
	if integration.CgroupV2() {
		return []cgroupValue{
			{file: "memory.max", want: "50331648"},
			{file: "cpu.max", want: "25000 50000"},
			{file: "pids.max", want: "64"},
		}
	}
	return []cgroupValue{
		{"memory", "memory.limit_in_bytes", "50331648"},
		{"cpu", "cpu.cfs_quota_us", "25000"},
		{"cpu", "cpu.cfs_period_us", "50000"},
		{"pids", "pids.max", "64"},
	}
}

// TestClientUpdate: task.Update through containerd's client changes the
// running container's cgroup and metrics; a value the kernel cannot take
// is refused with the runtime's error class and changes nothing; Update of
// a task that has exited (not yet deleted) is refused.
func TestClientUpdate(t *testing.T) {
	invalid := []struct {
		name string
		res  *specs.LinuxResources
		// mention: the message must name one of these, whatever the
		// runtime (runc names the file it failed to write).
		mention []string
	}{
		// No host has cpu 9999 online; runc learns it from the kernel.
		{"cpuset-offline", &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0-9999"}}, []string{"0-9999"}},
		// The kernel's cfs period is 1ms..1s; v2 keeps it in cpu.max.
		{"cpu-period-too-short", &specs.LinuxResources{CPU: &specs.LinuxCPU{Period: ptr(uint64(100))}}, []string{"period", "cpu.max"}},
	}
	forEachTarget(t, func(t *testing.T, tg target) {
		want, known := updateErrors[tg.runtime]
		if !known {
			t.Logf("no error classes known for %s: only that Update fails is checked", tg.runtime)
		}
		tc := newCase(t, tg, "update")
		s := tc.start(cio.NullIO, oci.WithProcessArgs("/bin/sleep", "1000"))
		files := updatedFiles()

		before := make([]string, len(files))
		for i, f := range files {
			before[i] = tc.cgroupFile(f.controller, f.file)
		}
		ctx, cancel := tc.callCtx()
		defer cancel()
		if err := s.task.Update(ctx, containerd.WithResources(updateResources())); err != nil {
			t.Fatalf("update: %v (class %s)", err, classOf(err))
		}
		for i, f := range files {
			got := tc.cgroupFile(f.controller, f.file)
			if got != f.want {
				t.Errorf("%s = %q after update (was %q), want %q", f.file, got, before[i], f.want)
			}
			if before[i] == f.want {
				t.Errorf("%s was %q before the update already: the case proves nothing", f.file, before[i])
			}
		}
		tc.checkMetrics(ctx, s.task)

		// The cpuset must stay as well: it is what the first invalid
		// update tries to change. On v2 the file is there only where the
		// parents delegate the cpuset controller.
		cpusetDir, cpusetFile := tc.c.CgroupDir("cpuset", tc.id), "cpuset.cpus"
		cpusBefore, cpusErr := readCgroupFile(cpusetDir, cpusetFile)
		if cpusErr != nil {
			t.Logf("cpuset not checked: %v", cpusErr)
		}
		for _, c := range invalid {
			err := s.task.Update(ctx, containerd.WithResources(c.res))
			t.Logf("%s: invalid update %s: %v (class %s)", tg.name(), c.name, err, classOf(err))
			switch {
			case err == nil:
				t.Errorf("invalid update %s succeeded", c.name)
			case known && !want.invalid.is(err):
				t.Errorf("invalid update %s: %v is of class %s, want %s", c.name, err, classOf(err), want.invalid.name)
			case !slices.ContainsFunc(c.mention, func(m string) bool { return strings.Contains(err.Error(), m) }):
				t.Errorf("invalid update %s: %q mentions none of %q", c.name, err, c.mention)
			}
			for _, f := range files {
				if got := tc.cgroupFile(f.controller, f.file); got != f.want {
					t.Errorf("after invalid update %s: %s = %q, want it left at %q", c.name, f.file, got, f.want)
				}
			}
			if got, err := readCgroupFile(cpusetDir, cpusetFile); cpusErr == nil && (err != nil || got != cpusBefore) {
				t.Errorf("after invalid update %s: %s = %q (%v), want it left at %q", c.name, cpusetFile, got, err, cpusBefore)
			}
		}

		if st := tc.kill(s); st.ExitCode() != 137 {
			t.Errorf("exit status after SIGKILL = %d (%v), want 137", st.ExitCode(), st.Error())
		}
		if st, err := s.task.Status(ctx); err != nil || st.Status != containerd.Stopped {
			t.Fatalf("status after exit: %+v, %v; want stopped", st, err)
		}
		err := s.task.Update(ctx, containerd.WithResources(updateResources()))
		t.Logf("%s: update of a stopped task: %v (class %s)", tg.name(), err, classOf(err))
		switch {
		case err == nil:
			t.Errorf("update of a stopped task succeeded")
		case known && !want.stopped.is(err):
			t.Errorf("update of a stopped task: %v is of class %s, want %s", err, classOf(err), want.stopped.name)
		case !strings.Contains(err.Error(), "stopped"):
			t.Errorf("update of a stopped task: %q does not say the task is stopped", err)
		}
	})
}

// checkMetrics reads the task's metrics through the client and checks
// they report the limits just set.
func (tc *tcase) checkMetrics(ctx context.Context, task containerd.Task) {
	tc.t.Helper()
	m, err := task.Metrics(ctx)
	if err != nil {
		tc.t.Fatalf("metrics: %v", err)
	}
	data, err := typeurl.UnmarshalAny(m.Data)
	if err != nil {
		tc.t.Fatalf("decode metrics of type %s: %v", m.Data.GetTypeUrl(), err)
	}
	var memLimit, pidsLimit uint64
	switch s := data.(type) {
	case *v1stats.Metrics:
		memLimit, pidsLimit = s.GetMemory().GetUsage().GetLimit(), s.GetPids().GetLimit()
	case *v2stats.Metrics:
		memLimit, pidsLimit = s.GetMemory().GetUsageLimit(), s.GetPids().GetLimit()
	default:
		tc.t.Fatalf("metrics are a %T (%s), want cgroup v1 or v2 Metrics", data, m.Data.GetTypeUrl())
	}
	if memLimit != updMemory {
		tc.t.Errorf("metrics: memory limit %d, want %d", memLimit, updMemory)
	}
	if pidsLimit != updPids {
		tc.t.Errorf("metrics: pids limit %d, want %d", pidsLimit, updPids)
	}
}

func ptr[T any](v T) *T { return &v }

// Issue 9: the memory limit and the memory+swap limit updated together
// (what containerd's CRI sends for a resize), raised and then lowered:
// the pair must be written in the order the kernel takes it.
func TestClientUpdateMemoryAndSwap(t *testing.T) {
	const mib = 1 << 20
	forEachTarget(t, func(t *testing.T, tg target) {
		v2 := integration.CgroupV2()
		if !v2 {
			if _, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"); err != nil {
				t.Skip("this kernel does not account swap (no memory.memsw.limit_in_bytes)")
			}
		}
		tc := newCase(t, tg, "memswap")
		s := tc.start(cio.NullIO, oci.WithProcessArgs("/bin/sleep", "1000"), oci.WithMemoryLimit(64*mib), oci.WithMemorySwap(64*mib))
		ctx, cancel := tc.callCtx()
		defer cancel()
		for _, size := range []int64{128 * mib, 64 * mib, 256 * mib} {
			res := &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(size), Swap: ptr(size)}}
			if err := s.task.Update(ctx, containerd.WithResources(res)); err != nil {
				t.Fatalf("update memory and swap to %d MiB: %v", size/mib, err)
			}
			want := map[[2]string]string{
				{"memory", "memory.limit_in_bytes"}:       strconv.FormatInt(size, 10),
				{"memory", "memory.memsw.limit_in_bytes"}: strconv.FormatInt(size, 10),
			}
			if v2 {
				want = map[[2]string]string{{"", "memory.max"}: strconv.FormatInt(size, 10), {"", "memory.swap.max"}: "0"}
			}
			for f, w := range want {
				if got := tc.cgroupFile(f[0], f[1]); got != w {
					t.Errorf("after the update to %d MiB: %s = %s, want %s", size/mib, f[1], got, w)
				}
			}
		}
	})
}
