package linux

import (
	"path/filepath"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// wantsCgroupDelegation says whether the container asks to manage its own
// cgroup subtree: a cgroup namespace of its own and a read-write cgroup
// filesystem at /sys/fs/cgroup. Then, on cgroup v2, the cgroup is handed
// to the host uid of the container's process, as runc does (runc only
// under its systemd driver; here under both: the request is the spec's,
// not the driver's).
func wantsCgroupDelegation(spec *specs.Spec) bool {
	if spec.Linux == nil || spec.Process == nil {
		return false
	}
	if !slices.ContainsFunc(spec.Linux.Namespaces, func(n specs.LinuxNamespace) bool {
		return n.Type == specs.CgroupNamespace && n.Path == ""
	}) {
		return false
	}
	return slices.ContainsFunc(spec.Mounts, func(m specs.Mount) bool {
		if filepath.Clean(m.Destination) != "/sys/fs/cgroup" || (m.Type != "cgroup" && m.Type != "cgroup2") {
			return false
		}
		return !slices.Contains(m.Options, "ro") && !slices.Contains(m.Options, "rro")
	})
}
