package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/minishim/containerd-shim-mini-v2/linux/initproc"
)

// Mount is one line of /proc/self/mountinfo.
type Mount = initproc.MountinfoEntry

// Mounts reads /proc/self/mountinfo.
func Mounts() ([]Mount, error) {
	mounts, err := initproc.ReadMountinfo("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return mounts, nil
}

// MountsUnder lists mount points at or below dir, outermost first.
func MountsUnder(dir string) ([]string, error) {
	mounts, err := Mounts()
	if err != nil {
		return nil, err
	}
	dir = filepath.Clean(dir)
	var out []string
	for _, m := range mounts {
		if m.MountPoint == dir || strings.HasPrefix(m.MountPoint, dir+"/") {
			out = append(out, m.MountPoint)
		}
	}
	return out, nil
}

// CgroupRoots lists the mount points of every cgroup hierarchy (each v1
// controller and the unified one), so leak checks work on v1, v2 and hybrid.
func CgroupRoots() ([]string, error) {
	mounts, err := Mounts()
	if err != nil {
		return nil, err
	}
	return cgroupRootsOf(mounts), nil
}

// CgroupV2 says whether the host runs the unified hierarchy only.
func CgroupV2() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

// RemoveNamespaceCgroups removes the empty /<namespace> parents runc
// leaves in every hierarchy; a busy one (another suite running) stays.
func RemoveNamespaceCgroups(namespace string) {
	roots, _ := CgroupRoots()
	for _, r := range roots {
		_ = syscall.Rmdir(filepath.Join(r, namespace))
	}
}

// cgroupRootsOf picks the cgroup hierarchies out of a mount table.
func cgroupRootsOf(mounts []Mount) []string {
	var out []string
	for _, m := range mounts {
		if m.FSType == "cgroup" || m.FSType == "cgroup2" {
			out = append(out, m.MountPoint)
		}
	}
	return out
}
