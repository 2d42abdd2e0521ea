package cri

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/minishim/containerd-shim-mini-v2/integration"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestCRIUpdateMemory (issue 9): UpdateContainerResources of a running
// container's memory limit, up and back down, as Kubernetes' in-place
// resize sends it (the CRI passes the swap limit along with it); the
// container's cgroup must hold each new limit.
func TestCRIUpdateMemory(t *testing.T) {
	const mib = 1 << 20
	forEachRuntime(t, func(t *testing.T, tg target) {
		p := runPod(t, tg, "update-mem", false)
		c := p.start("mem", &runtime.ContainerConfig{Linux: &runtime.LinuxContainerConfig{
			Resources: &runtime.LinuxContainerResources{MemoryLimitInBytes: 64 * mib},
		}})
		for _, limit := range []int64{128 * mib, 64 * mib} {
			ctx, cancel := callCtx()
			_, err := suite.rs.UpdateContainerResources(ctx, &runtime.UpdateContainerResourcesRequest{
				ContainerId: c.id,
				Linux:       &runtime.LinuxContainerResources{MemoryLimitInBytes: limit},
			})
			cancel()
			if err != nil {
				t.Fatalf("UpdateContainerResources to %d MiB: %v", limit/mib, err)
			}
			if got := memoryLimit(t, c); got != limit {
				t.Errorf("after the update to %d MiB the cgroup's limit is %d", limit/mib, got)
			}
		}
	})
}

// memoryLimit reads the container's memory limit from its cgroup: with
// the cgroupfs driver the CRI puts it at the pod's parent plus its id.
func memoryLimit(t *testing.T, c *container) int64 {
	t.Helper()
	file, controller := "memory.max", ""
	if !integration.CgroupV2() {
		file, controller = "memory.limit_in_bytes", "memory"
	}
	dir := filepath.Join("/sys/fs/cgroup", controller, c.p.cgroupParent(), c.id)
	data, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
