package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultSpec is the spec `ctr oci spec` prints for this daemon's version
// (containerd's defaults: namespaces, mounts, capabilities, masked paths),
// rooted at rootfs, for `ctr run --config`.
func (c *Containerd) DefaultSpec(ctx context.Context, rootfs string) (*specs.Spec, error) {
	res := c.Ctr(ctx, nil, "oci", "spec")
	if res.ExitCode != 0 {
		return nil, fmt.Errorf("ctr oci spec: %s", res)
	}
	var s specs.Spec
	if err := json.Unmarshal([]byte(res.Stdout), &s); err != nil {
		return nil, fmt.Errorf("ctr oci spec printed no spec: %w", err)
	}
	if s.Process == nil || s.Linux == nil || s.Root == nil {
		return nil, fmt.Errorf("ctr oci spec has no process, linux or root section:\n%s", res.Stdout)
	}
	s.Root.Path = rootfs
	return &s, nil
}

// WriteSpec writes spec for container id, running args, into the daemon's
// directory and returns the file's path, for `ctr run --config PATH ID`.
// The container gets the cgroup ctr would give it.
func (c *Containerd) WriteSpec(id string, spec *specs.Spec, args ...string) (string, error) {
	s := *spec
	lin := *s.Linux
	lin.CgroupsPath = c.CgroupsPath(id)
	s.Linux = &lin
	return c.WriteSpecAsIs(id, &s, args...)
}

// WriteSpecAsIs is WriteSpec keeping the spec's own cgroupsPath.
func (c *Containerd) WriteSpecAsIs(id string, spec *specs.Spec, args ...string) (string, error) {
	s := *spec
	proc := *s.Process
	proc.Args = args
	s.Process = &proc
	data, err := json.Marshal(&s)
	if err != nil {
		return "", err
	}
	path := filepath.Join(c.Dir, "spec-"+id+".json")
	return path, os.WriteFile(path, data, 0o600)
}
