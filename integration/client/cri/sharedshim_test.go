package cri

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/minishim/containerd-shim-mini-v2/integration"
)

// sharedHandlerSuffix names a fourth handler of this runtime, whose
// options table asks for one shim per containerd namespace.
const sharedHandlerSuffix = "-shared"

const sharedHandlerOptions = `ShimGroup = "namespace"`

// TestCRISharedShim (issue 12): a RuntimeClass whose options table says
// ShimGroup = "namespace" serves every pod of the handler, sandboxes and
// containers, from one shim; pods keep working as they come and go.
func TestCRISharedShim(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, tg target) {
		if tg.runtime != integration.MiniRuntime {
			t.Skip("a grouping of this runtime's own")
		}
		tg.handler += sharedHandlerSuffix
		var pids []int
		var pods []*pod
		for i := 0; i < 2; i++ {
			p := runPod(t, tg, fmt.Sprintf("shared%d", i), false)
			c := p.start("sleeper", &runtime.ContainerConfig{})
			pids = append(pids, p.hostPid(), c.hostPid())
			pods = append(pods, p)
		}
		shim := 0
		for _, pid := range pids {
			parent, err := integration.ShimParent(pid, tg.runtime)
			if err != nil {
				t.Error(err)
			}
			if shim == 0 {
				shim = parent
			}
			if parent != shim {
				t.Errorf("process %d is served by %d, another of the handler by %d: want one shim", pid, parent, shim)
			}
		}
		// The first pod goes; the second still takes execs.
		pods[0].remove()
		c := pods[1].start("after", &runtime.ContainerConfig{})
		if out := c.mustSucceed("echo still-served"); !strings.Contains(out, "still-served") {
			t.Errorf("exec after the first pod went: %q", out)
		}
	})
}

// hostPid is the pod's sandbox (pause) process, from its verbose status.
func (p *pod) hostPid() int {
	p.t.Helper()
	ctx, cancel := callCtx()
	defer cancel()
	st, err := suite.rs.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: p.id, Verbose: true})
	if err != nil {
		p.t.Fatal(err)
	}
	return verbosePid(p.t, st.GetInfo())
}

// hostPid is the container's init, from its verbose status.
func (c *container) hostPid() int {
	c.p.t.Helper()
	ctx, cancel := callCtx()
	defer cancel()
	st, err := suite.rs.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: c.id, Verbose: true})
	if err != nil {
		c.p.t.Fatal(err)
	}
	return verbosePid(c.p.t, st.GetInfo())
}

// verbosePid reads "pid" from the "info" JSON of a verbose CRI status.
func verbosePid(t *testing.T, info map[string]string) int {
	t.Helper()
	var v struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(info["info"]), &v); err != nil || v.Pid <= 0 {
		t.Fatalf("no pid in the verbose status (%v): %.300s", err, info["info"])
	}
	return v.Pid
}
