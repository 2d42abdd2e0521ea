package integration

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Mount is one line of /proc/self/mountinfo, reduced to what the harness
// looks at.
type Mount struct {
	Point  string
	FSType string
	Source string
}

// Mounts reads /proc/self/mountinfo.
func Mounts() ([]Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	defer f.Close()
	var out []Mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superopts
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		m := Mount{Point: unescapeMountinfo(fields[4])}
		for i := 6; i < len(fields)-2; i++ {
			if fields[i] == "-" {
				m.FSType = fields[i+1]
				m.Source = unescapeMountinfo(fields[i+2])
				break
			}
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return out, nil
}

// unescapeMountinfo undoes the octal escapes (\040 for space, ...) the
// kernel uses in mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
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
		if m.Point == dir || strings.HasPrefix(m.Point, dir+"/") {
			out = append(out, m.Point)
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
			out = append(out, m.Point)
		}
	}
	return out
}
