package cri

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minishim/containerd-shim-mini-v2/integration"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// target is one runtime under test and the CRI runtime handler (the
// RuntimeClass handler a kubelet would send) configured for it.
type target struct {
	runtime string // io.containerd.mini.v2
	handler string // mini
}

// forEachRuntime runs fn as a parallel subtest per runtime of the suite,
// named after its handler.
func forEachRuntime(t *testing.T, fn func(t *testing.T, tg target)) {
	t.Parallel()
	for _, rt := range suite.Runtimes {
		tg := target{runtime: rt, handler: integration.RuntimeTag(rt)}
		t.Run(tg.handler, func(t *testing.T) {
			t.Parallel()
			if suite.err != nil {
				t.Fatalf("containerd with CRI unusable: %v", suite.err)
			}
			if rt == integration.MiniRuntime && suite.ShimErr != nil {
				t.Fatalf("%s not available: %v", rt, suite.ShimErr)
			}
			fn(t, tg)
		})
	}
}

// callCtx bounds one CRI call.
func callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

// pod is one running pod sandbox of a case.
type pod struct {
	t      *testing.T
	tg     target
	name   string // unique: also the last element of its cgroup parent
	id     string
	config *runtime.PodSandboxConfig
	logDir string
}

// runPod runs a host-network pod with the case's runtime handler,
// privileged if asked (a privileged container needs that). Its cgroup
// parent is /minicri/<name>, so that whatever the pod leaves in any
// hierarchy is found under one directory. Cleanups registered here stop
// and remove it, then look for leaks; containers created later are removed
// before.
func runPod(t *testing.T, tg target, label string, privileged bool) *pod {
	t.Helper()
	p, err := runPodWith(t, tg, label, func(c *runtime.PodSandboxConfig) {
		c.Linux.SecurityContext.Privileged = privileged
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// runPodWith is runPod with the pod's config changed by mutate; the error
// of RunPodSandbox is returned, for cases that expect a refusal.
func runPodWith(t *testing.T, tg target, label string, mutate func(*runtime.PodSandboxConfig)) (*pod, error) {
	t.Helper()
	p := &pod{t: t, tg: tg, name: fmt.Sprintf("%s-%s-%s", label, tg.handler, integration.RandomSuffix())}
	p.logDir = filepath.Join(suite.Dir, "logs", p.name)
	if err := os.MkdirAll(p.logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	p.config = &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: p.name, Uid: p.name, Namespace: "minicri"},
		LogDirectory: p.logDir,
		Linux: &runtime.LinuxPodSandboxConfig{
			CgroupParent: path.Join(cgroupRoot, p.name),
			SecurityContext: &runtime.LinuxSandboxSecurityContext{
				NamespaceOptions: namespaces(),
			},
		},
	}
	mutate(p.config)
	// Registered first, so it runs last: after every orderly removal and
	// every per-id check.
	t.Cleanup(p.checkGone)
	ctx, cancel := callCtx()
	defer cancel()
	resp, err := suite.rs.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: p.config, RuntimeHandler: tg.handler})
	if err != nil {
		return nil, fmt.Errorf("RunPodSandbox %s (handler %s): %w\n%s", p.name, tg.handler, err, suite.c.LogAbout(p.name, 40))
	}
	p.id = resp.GetPodSandboxId()
	t.Logf("pod %s is %s", p.name, p.id)
	// The pause container has the sandbox's id, and so do its shim, bundle
	// and the mounts the CRI makes for the pod (/dev/shm).
	suite.c.WatchCase(t, integration.ShimBinaryName(tg.runtime), p.id, suite.Rootfs, func() {})
	t.Cleanup(p.remove)
	return p, nil
}

// namespaces are those of a hostNetwork pod as a kubelet asks for them:
// the host's network (and so its UTS namespace), and a pid namespace per
// container. Unset, the pid mode would be POD (the enum's zero): one pid
// namespace whose pid 1 is the pause container.
func namespaces() *runtime.NamespaceOption {
	return &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE, Pid: runtime.NamespaceMode_CONTAINER}
}

// remove stops and removes the pod as a kubelet does; what is gone is fine.
func (p *pod) remove() {
	ctx, cancel := callCtx()
	defer cancel()
	if _, err := suite.rs.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: p.id}); err != nil && !isNotFound(err) {
		p.t.Errorf("StopPodSandbox %s: %v", p.name, err)
	}
	if _, err := suite.rs.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: p.id}); err != nil && !isNotFound(err) {
		p.t.Errorf("RemovePodSandbox %s: %v", p.name, err)
	}
}

// checkGone fails the case when the CRI still lists the pod or a container
// of it, or when anything is left in the pod's cgroup parent (a directory
// in any hierarchy, a process in it), then removes what it can so that
// later cases start clean.
func (p *pod) checkGone() {
	ctx, cancel := callCtx()
	defer cancel()
	if p.id != "" {
		if resp, err := suite.rs.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{Filter: &runtime.PodSandboxFilter{Id: p.id}}); err != nil {
			p.t.Errorf("ListPodSandbox: %v", err)
		} else if len(resp.GetItems()) > 0 {
			p.t.Errorf("leak: the CRI still lists pod %s (%s)", p.name, resp.GetItems()[0].GetState())
			_, _ = suite.rs.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: p.id})
			_, _ = suite.rs.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: p.id})
		}
		if resp, err := suite.rs.ListContainers(ctx, &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: p.id}}); err != nil {
			p.t.Errorf("ListContainers: %v", err)
		} else {
			for _, c := range resp.GetContainers() {
				p.t.Errorf("leak: the CRI still lists container %s (%s) of pod %s", c.GetMetadata().GetName(), c.GetState(), p.name)
			}
		}
	}
	// Shims and cgroups go a moment after the removal that ends them.
	var leaks []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		leaks = cgroupLeaks(p.cgroupParent())
		if len(leaks) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, l := range leaks {
		p.t.Errorf("leak after pod %s: %s", p.name, l)
	}
	removeCgroupParent(p.cgroupParent())
}

func (p *pod) cgroupParent() string { return p.config.GetLinux().GetCgroupParent() }

// cgroupLeaks lists processes in cgroup parent (or below) and the cgroups
// below it in every hierarchy. The parent itself may stay (runc leaves
// the parents of its cgroups) but must then be empty.
func cgroupLeaks(parent string) []string {
	var leaks []string
	for _, proc := range integration.ProcessesMatching(func(p integration.Proc) bool { return inCgroup(p, parent) }) {
		leaks = append(leaks, fmt.Sprintf("process: pid %d %q in %s", proc.Pid, proc.CmdlineString(), parent))
	}
	roots, err := integration.CgroupRoots()
	if err != nil {
		return append(leaks, err.Error())
	}
	for _, r := range roots {
		entries, _ := os.ReadDir(filepath.Join(r, parent))
		for _, e := range entries {
			if e.IsDir() {
				leaks = append(leaks, "cgroup: "+filepath.Join(r, parent, e.Name()))
			}
		}
	}
	return leaks
}

// removeCgroupParent kills what is still in parent and removes it (and
// whatever is below) from every hierarchy, bottom up.
func removeCgroupParent(parent string) {
	// A cgroup with a process in it cannot go, and SIGKILL takes a moment.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		procs := integration.ProcessesMatching(func(p integration.Proc) bool { return inCgroup(p, parent) })
		if len(procs) == 0 {
			break
		}
		for _, proc := range procs {
			_ = syscall.Kill(proc.Pid, syscall.SIGKILL)
		}
	}
	roots, _ := integration.CgroupRoots()
	for _, r := range roots {
		integration.RemoveCgroupTree(filepath.Join(r, parent))
	}
}

// inCgroup says whether p is in cgroup parent or below, in any hierarchy.
func inCgroup(p integration.Proc, parent string) bool {
	return slices.ContainsFunc(p.Cgroups(), func(g string) bool { return g == parent || strings.HasPrefix(g, parent+"/") })
}

// isNotFound: what is already gone counts as removed.
func isNotFound(err error) bool {
	return status.Code(err) == codes.NotFound
}
