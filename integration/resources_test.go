package integration

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cgroupFile reads one control file of the container's cgroup: v1 files
// live under their controller's hierarchy, v2 files in the one tree.
func (tc *tcase) cgroupFile(v1Controller, name string) string {
	tc.t.Helper()
	data, err := os.ReadFile(filepath.Join(tc.c.CgroupDir(v1Controller, tc.id), name))
	if err != nil {
		tc.t.Fatalf("read cgroup file: %v", err)
	}
	return strings.TrimSpace(string(data))
}

// Issue 4: resources from the spec are in the cgroup before the process
// runs; the container can be paused and resumed with events; metrics carry
// real values; a memory limit ends in an OOM kill with exit 137 and a
// /tasks/oom event; device rules deny what the spec does not allow.
func TestResources(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		t.Run("limits-pause-metrics", func(t *testing.T) {
			tc := newCase(t, tg, "limits")
			done := tc.background("", tc.runArgs([]string{"--rm", "--memory-limit", "67108864", "--cpu-quota", "50000", "--cpu-period", "100000"}, "", "/bin/sleep", "1000")...)
			tc.waitStatus("RUNNING")
			if CgroupV2() {
				if got := tc.cgroupFile("", "memory.max"); got != "67108864" {
					t.Errorf("memory.max = %q", got)
				}
				if got := tc.cgroupFile("", "cpu.max"); got != "50000 100000" {
					t.Errorf("cpu.max = %q", got)
				}
			} else {
				if got := tc.cgroupFile("memory", "memory.limit_in_bytes"); got != "67108864" {
					t.Errorf("memory.limit_in_bytes = %q", got)
				}
				if got := tc.cgroupFile("cpu", "cpu.cfs_quota_us"); got != "50000" {
					t.Errorf("cpu.cfs_quota_us = %q", got)
				}
			}

			metrics := tc.ctr("", "tasks", "metrics", tc.id)
			if metrics.ExitCode != 0 {
				t.Fatalf("metrics: %s", metrics)
			}
			usage := "memory.usage_in_bytes"
			if CgroupV2() {
				usage = "memory.usage"
			}
			if v := metricValue(metrics.Stdout, usage); v <= 0 {
				t.Errorf("%s is %d, want > 0:\n%s", usage, v, metrics.Stdout)
			}
			if v := metricValue(metrics.Stdout, "pids.current"); v < 1 {
				t.Errorf("pids.current is %d, want >= 1:\n%s", v, metrics.Stdout)
			}

			if res := tc.ctr("", "tasks", "pause", tc.id); res.ExitCode != 0 {
				t.Fatalf("pause: %s", res)
			}
			tc.waitStatus("PAUSED")
			if res := tc.ctr("", "tasks", "exec", "--exec-id", "in-paused", tc.id, "/bin/true"); res.ExitCode == 0 {
				t.Errorf("exec into a paused container succeeded:\n%s", res)
			}
			if res := tc.ctr("", "tasks", "resume", tc.id); res.ExitCode != 0 {
				t.Fatalf("resume: %s", res)
			}
			tc.waitStatus("RUNNING")
			if res := tc.ctr("", "tasks", "kill", "--signal", "SIGKILL", tc.id); res.ExitCode != 0 {
				t.Fatalf("kill: %s", res)
			}
			if res := tc.await(done); res.ExitCode != 137 {
				t.Fatalf("want exit code 137:\n%s", res)
			}
			tc.waitTopics("/tasks/paused", "/tasks/resumed")
		})
		t.Run("oom", func(t *testing.T) {
			tc := newCase(t, tg, "oom")
			res := tc.ctr("", tc.runArgs([]string{"--rm", "--memory-limit", "16777216"}, "", "/bin/sh", "-c", `x=a; while true; do x="$x$x"; done`)...)
			if res.ExitCode != 137 {
				t.Fatalf("want exit code 137 after an OOM kill:\n%s", res)
			}
			tc.waitTopics("/tasks/oom", "/tasks/exit")
		})
		t.Run("devices", func(t *testing.T) {
			tc := newCase(t, tg, "devices")
			res := tc.run("", "/bin/sh", "-c", "mknod /dev/sda-test b 8 0 && head -c1 /dev/sda-test >/dev/null && echo opened")
			if res.ExitCode == 0 || strings.Contains(res.Stdout, "opened") || !strings.Contains(res.Combined(), "not permitted") {
				t.Fatalf("a block device the spec does not allow was usable:\n%s", res)
			}
		})
	})
}

// metricValue finds a metric's number in `ctr tasks metrics` output.
func metricValue(out, name string) int64 {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == name {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return -1
}

// waitTopics waits until the container's events include every topic.
func (tc *tcase) waitTopics(topics ...string) {
	tc.t.Helper()
	ctx, cancel := context.WithTimeout(tc.ctx, 10*time.Second)
	defer cancel()
	_, err := tc.tg.d.events.WaitFor(ctx, func(evs []Event) bool {
		have := map[string]bool{}
		for _, e := range evs {
			if e.Namespace == tc.c.Namespace && e.ContainerID() == tc.id {
				have[e.Topic] = true
			}
		}
		for _, t := range topics {
			if !have[t] {
				return false
			}
		}
		return true
	})
	if err != nil {
		got := Topics(tc.tg.d.events.Events(func(e Event) bool { return e.ContainerID() == tc.id }))
		tc.t.Fatalf("events of %s: want %v among %v: %v", tc.id, topics, got, err)
	}
}
