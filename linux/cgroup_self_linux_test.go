package linux

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/cgroups/v3"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestReleaseAtLeast(t *testing.T) {
	tests := []struct {
		release string
		want    bool
	}{
		{"6.18.44-fc-v657", true},
		{"6.1.0-18-amd64", true},
		{"5.17.0", true},
		{"5.16.20", false},
		{"5.4.0-150-generic", false},
		{"4.18.0-513.el8.x86_64", false},
		{"5.17-rc1", true},
		{"garbage", false},
	}
	for _, tt := range tests {
		if got := releaseAtLeast(tt.release, 5, 17); got != tt.want {
			t.Errorf("releaseAtLeast(%q, 5, 17) = %v, want %v", tt.release, got, tt.want)
		}
	}
}

// The preamble's lines name the tasks file of every v1 hierarchy of the
// cgroup, and the unified hierarchy (hybrid) is left to CLONE_INTO_CGROUP.
func TestSelfPlacement(t *testing.T) {
	requireCgroupV1(t)
	path := "/minitest-unit/self-" + strconv.Itoa(os.Getpid())
	cg, err := newCgroupfs(path, &specs.LinuxResources{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cg.Delete(); err != nil {
			t.Error(err)
		}
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*/minitest-unit")
		for _, d := range append(dirs, "/sys/fs/cgroup/unified/minitest-unit") {
			_ = os.Remove(d)
		}
	})
	sp := cg.(*cgroupV1).selfPlacement()
	if len(sp.tasks) == 0 {
		t.Fatal("no tasks file")
	}
	for _, line := range strings.Split(strings.TrimSpace(string(sp.bootstrap())), "\n") {
		tasks, ok := strings.CutPrefix(line, "cgroup ")
		if !ok || filepath.Base(tasks) != "tasks" || !strings.HasSuffix(filepath.Dir(tasks), path) {
			t.Errorf("bootstrap line %q: want cgroup <hierarchy>%s/tasks", line, path)
		}
		if _, err := os.Stat(tasks); err != nil {
			t.Error(err)
		}
	}
	hybrid := cgroups.Mode() == cgroups.Hybrid
	if (sp.unified != "") != hybrid || hybrid && sp.unified != filepath.Join(hybridUnifiedRoot, path) {
		t.Errorf("unified = %q on a host whose mode is %v", sp.unified, cgroups.Mode())
	}
}
