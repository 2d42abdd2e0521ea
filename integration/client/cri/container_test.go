package cri

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/minishim/containerd-shim-mini-v2/integration"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// container is one container of a pod.
type container struct {
	p    *pod
	name string
	id   string
}

// create creates a container in the pod from the busybox image: cfg says
// what the case cares about; Metadata, Image, LogPath, the namespace
// options and (if empty) Command are filled in here. The error is returned for cases that expect
// a refusal; a created container is removed by a cleanup.
func (p *pod) create(name string, cfg *runtime.ContainerConfig) (*container, error) {
	p.t.Helper()
	cfg.Metadata = &runtime.ContainerMetadata{Name: name}
	cfg.Image = &runtime.ImageSpec{Image: busyboxImage}
	cfg.LogPath = name + ".log"
	if cfg.Linux == nil {
		cfg.Linux = &runtime.LinuxContainerConfig{}
	}
	if cfg.Linux.SecurityContext == nil {
		cfg.Linux.SecurityContext = &runtime.LinuxContainerSecurityContext{}
	}
	// The container's own options decide its pid namespace; its user
	// namespace is the pod's, as a kubelet asks.
	cfg.Linux.SecurityContext.NamespaceOptions = namespaces()
	cfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions = p.config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions()
	if len(cfg.Command) == 0 {
		// A container's pid 1 ignores SIGTERM, so StopContainer kills it.
		cfg.Command = []string{"/bin/sleep", "infinity"}
	}
	ctx, cancel := callCtx()
	defer cancel()
	resp, err := suite.rs.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: p.id, Config: cfg, SandboxConfig: p.config})
	if err != nil {
		return nil, fmt.Errorf("CreateContainer %s in pod %s: %w", name, p.name, err)
	}
	c := &container{p: p, name: name, id: resp.GetContainerId()}
	suite.c.WatchCase(p.t, integration.ShimBinaryName(p.tg.runtime), c.id, suite.Rootfs, func() {})
	p.t.Cleanup(c.remove)
	return c, nil
}

// start creates and starts a container; any error ends the case.
func (p *pod) start(name string, cfg *runtime.ContainerConfig) *container {
	p.t.Helper()
	c, err := p.create(name, cfg)
	if err != nil {
		p.t.Fatalf("%v\n%s", err, suite.c.LogAbout(p.id, 40))
	}
	c.startCreated()
	return c
}

// startCreated starts a created container; any error ends the case.
func (c *container) startCreated() {
	c.p.t.Helper()
	if err := c.tryStart(); err != nil {
		c.p.t.Fatalf("%v\n%s", err, suite.c.LogAbout(c.id, 40))
	}
}

// tryStart starts a created container.
func (c *container) tryStart() error {
	ctx, cancel := callCtx()
	defer cancel()
	if _, err := suite.rs.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: c.id}); err != nil {
		return fmt.Errorf("StartContainer %s in pod %s: %w", c.name, c.p.name, err)
	}
	return nil
}

// remove stops (SIGKILL at once: timeout 0) and removes the container. A
// failed case gets the container's output, which the CRI logged.
func (c *container) remove() {
	t := c.p.t
	ctx, cancel := callCtx()
	defer cancel()
	if _, err := suite.rs.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: c.id}); err != nil && !isNotFound(err) {
		t.Errorf("StopContainer %s: %v", c.name, err)
	}
	if _, err := suite.rs.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: c.id}); err != nil && !isNotFound(err) {
		t.Errorf("RemoveContainer %s: %v", c.name, err)
	}
	if t.Failed() {
		if out, err := os.ReadFile(filepath.Join(c.p.logDir, c.name+".log")); err == nil && len(out) > 0 {
			t.Logf("output of container %s:\n%s", c.name, out)
		}
	}
}

// execResult is what ExecSync returned, printable for messages.
type execResult struct {
	cmd            []string
	stdout, stderr string
	exitCode       int32
}

func (r execResult) String() string {
	return fmt.Sprintf("$ %s\nexit code %d\nstdout: %q\nstderr: %q", strings.Join(r.cmd, " "), r.exitCode, r.stdout, r.stderr)
}

func (r execResult) combined() string { return r.stdout + r.stderr }

// exec runs cmd in the container with ExecSync; an RPC error ends the case,
// a command's failure is the caller's to judge.
func (c *container) exec(cmd ...string) execResult {
	c.p.t.Helper()
	ctx, cancel := callCtx()
	defer cancel()
	resp, err := suite.rs.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: c.id, Cmd: cmd, Timeout: 20})
	if err != nil {
		c.p.t.Fatalf("ExecSync %q in %s: %v\n%s", cmd, c.name, err, suite.c.LogAbout(c.id, 40))
	}
	return execResult{cmd: cmd, stdout: string(resp.GetStdout()), stderr: string(resp.GetStderr()), exitCode: resp.GetExitCode()}
}

// sh runs a shell script in the container.
func (c *container) sh(script string) execResult {
	c.p.t.Helper()
	return c.exec("/bin/sh", "-c", script)
}

// mustSucceed runs a script that has to exit 0 and returns its stdout.
func (c *container) mustSucceed(script string) string {
	c.p.t.Helper()
	r := c.sh(script)
	if r.exitCode != 0 {
		c.p.t.Fatalf("in %s:\n%s", c.name, r)
	}
	return r.stdout
}

// statusFields picks fields of a /proc/PID/status file as the container
// sees it: the init's (pid 1: each container has its own pid namespace)
// or the exec'd grep's own (self), which are set up by different paths of
// a runtime.
func (c *container) statusFields(pid string, names ...string) map[string]string {
	c.p.t.Helper()
	r := c.exec("/bin/grep", "-E", "^("+strings.Join(names, "|")+"):", "/proc/"+pid+"/status")
	if r.exitCode != 0 {
		c.p.t.Fatalf("in %s:\n%s", c.name, r)
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}
