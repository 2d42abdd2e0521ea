package linux

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// On cgroup v1, moving a process into a cgroup (cgroup.procs, or another
// process's pid in tasks) takes the kernel's global threadgroup lock, and
// the first writer of a burst waits for an RCU grace period: 5 to 15 ms on
// the hosts measured, the largest single cost of a Create or an exec. A
// thread that moves itself alone (0 written to a hierarchy's tasks file)
// skips that lock since Linux 5.17. The C preamble is a single thread, so
// it moves itself, the whole process, that way: it writes 0 into the tasks
// file of each v1 hierarchy of the container's cgroup before it does
// anything else (before it joins or creates a namespace, so a cgroup
// namespace is rooted there), and everything it forks is born inside. On a
// hybrid host the unified hierarchy has no such file (cgroup.threads takes
// threads of threaded cgroups only): there the process is cloned into the
// cgroup (CLONE_INTO_CGROUP). No thread of the shim ever enters the
// container's cgroups, where a freeze or a CPU quota would stall it.

// selfPlacement is what a preamble needs to place itself in a v1 cgroup:
// the tasks files of its hierarchies, and the unified hierarchy's cgroup
// directory on a hybrid host ("" elsewhere).
type selfPlacement struct {
	tasks   []string
	unified string
}

func (c *cgroupV1) selfPlacement() selfPlacement {
	var sp selfPlacement
	for _, h := range c.hierarchyDirs() {
		if h.name == "unified" {
			sp.unified = h.dir
			continue
		}
		sp.tasks = append(sp.tasks, filepath.Join(h.dir, "tasks"))
	}
	return sp
}

// bootstrap is the preamble's lines for sp: "cgroup <tasks file>" each.
func (sp selfPlacement) bootstrap() []byte {
	var b strings.Builder
	for _, t := range sp.tasks {
		fmt.Fprintf(&b, "cgroup %s\n", t)
	}
	return []byte(b.String())
}

// kernelAtLeast compares the running kernel's release with major.minor.
func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	return releaseAtLeast(unix.ByteSliceToString(u.Release[:]), major, minor)
}

// releaseAtLeast parses a kernel release ("6.1.0-18-amd64") as far as its
// major and minor numbers.
func releaseAtLeast(release string, major, minor int) bool {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return false
	}
	leading := func(s string) (int, error) {
		end := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
		if end >= 0 {
			s = s[:end]
		}
		return strconv.Atoi(s)
	}
	ma, err1 := leading(parts[0])
	mi, err2 := leading(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}
