package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// ShimSocketDir is where shims of a root containerd put their sockets.
const ShimSocketDir = "/run/containerd/s"

// ShimSocketPaths are the sockets a shim may make for container id: runc-v2
// names them sha256 of "<containerd address>/<ns>/<id>" (and ".../debug"
// for the debug socket), ours sha256 of "io.containerd.mini.v2:" and that.
func (c *Containerd) ShimSocketPaths(id string) []string {
	var out []string
	for _, p := range []string{
		filepath.Join(c.Address, c.Namespace, id),
		filepath.Join(c.Address, c.Namespace, id, "debug"),
		// Ours, named apart from runc-v2's.
		MiniRuntime + ":" + filepath.Join(c.Address, c.Namespace, id),
	} {
		out = append(out, shimSocketPath(p))
	}
	return out
}

// shimSocketPath is where a shim puts the socket it names after name: the
// sha256 of name, in hex, under ShimSocketDir.
func shimSocketPath(name string) string {
	sum := sha256.Sum256([]byte(name))
	return filepath.Join(ShimSocketDir, hex.EncodeToString(sum[:]))
}

// CgroupsPath is the cgroup ctr gives a container, /<namespace>/<id>, or
// the one its client gives it under Options.CgroupParent.
func (c *Containerd) CgroupsPath(id string) string {
	return path.Join("/", c.CgroupParent, id)
}

// CgroupDir is the directory of container id's cgroup: on v1 under the
// hierarchy of v1Controller ("memory", "cpu", "pids", ...), on v2 in the
// one tree, where v1Controller is ignored.
func (c *Containerd) CgroupDir(v1Controller, id string) string {
	if CgroupV2() {
		return filepath.Join("/sys/fs/cgroup", c.CgroupsPath(id))
	}
	return filepath.Join("/sys/fs/cgroup", v1Controller, c.CgroupsPath(id))
}

// Leak is one thing a container left behind.
type Leak struct {
	Kind   string // process, mount, cgroup, socket, bundle, container
	What   string
	Pid    int    // for processes
	Target string // path for mounts, cgroups, sockets, bundles
}

func (l Leak) String() string { return l.Kind + ": " + l.What }

// FindLeaks looks once for everything container id may have left: shim or
// container processes, mounts under the daemon's dirs, cgroup directories
// in any hierarchy, shim sockets, bundle directories and the container
// record itself. shimName is the runtime's binary name.
func (c *Containerd) FindLeaks(ctx context.Context, shimName, id string) []Leak {
	var leaks []Leak
	cg := c.CgroupsPath(id)
	for _, p := range Processes() {
		cmdline := p.CmdlineString()
		cgroups := p.Cgroups()
		inCgroup := slices.ContainsFunc(cgroups, func(g string) bool { return g == cg || strings.HasPrefix(g, cg+"/") })
		isShim := strings.Contains(cmdline, shimName) && strings.Contains(cmdline, id)
		if inCgroup || isShim {
			leaks = append(leaks, Leak{Kind: "process", Pid: p.Pid, What: fmt.Sprintf("pid %d %q (cgroup %v)", p.Pid, cmdline, cgroups)})
		}
	}
	mounts, err := Mounts()
	if err != nil {
		leaks = append(leaks, Leak{Kind: "mount", What: err.Error()})
	}
	for _, m := range mounts {
		if strings.HasPrefix(m.MountPoint, c.Dir+"/") && slices.Contains(strings.Split(m.MountPoint, "/"), id) {
			leaks = append(leaks, Leak{Kind: "mount", Target: m.MountPoint, What: fmt.Sprintf("%s (%s from %s)", m.MountPoint, m.FSType, m.Source)})
		}
	}
	for _, r := range cgroupRootsOf(mounts) {
		dir := filepath.Join(r, cg)
		if _, err := os.Stat(dir); err == nil {
			leaks = append(leaks, Leak{Kind: "cgroup", Target: dir, What: dir})
		}
	}
	for _, s := range c.ShimSocketPaths(id) {
		if _, err := os.Lstat(s); err == nil {
			leaks = append(leaks, Leak{Kind: "socket", Target: s, What: s})
		}
	}
	for _, d := range []string{c.TaskDir(id), c.WorkDir(id)} {
		if _, err := os.Lstat(d); err == nil {
			leaks = append(leaks, Leak{Kind: "bundle", Target: d, What: d})
		}
	}
	if res := c.Ctr(ctx, nil, "containers", "list", "--quiet"); res.ExitCode != 0 {
		leaks = append(leaks, Leak{Kind: "container", What: "list containers: " + res.String()})
	} else if slices.Contains(strings.Fields(res.Stdout), id) {
		leaks = append(leaks, Leak{Kind: "container", What: "containerd still has container " + id})
	}
	return leaks
}

// WaitNoLeaks polls FindLeaks until nothing is left or wait has passed
// (shims exit a moment after the delete that ends them), and returns what
// is still there.
func (c *Containerd) WaitNoLeaks(ctx context.Context, shimName, id string, wait time.Duration) []Leak {
	deadline := time.Now().Add(wait)
	for {
		leaks := c.FindLeaks(ctx, shimName, id)
		if len(leaks) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return leaks
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ForceCleanup removes container id however it can: kill and delete the
// task, delete the container, then kill leftover processes, unmount leftover
// mounts and remove leftover cgroups and sockets. Run it after the leak
// check so a broken case does not poison the cases after it.
func (c *Containerd) ForceCleanup(ctx context.Context, shimName, id string) {
	c.Ctr(ctx, nil, "tasks", "kill", "--signal", "SIGKILL", id)
	c.Ctr(ctx, nil, "tasks", "delete", "--force", id)
	c.Ctr(ctx, nil, "containers", "delete", id)
	leaks := c.FindLeaks(ctx, shimName, id)
	for _, l := range leaks {
		if l.Kind == "process" {
			_ = syscall.Kill(l.Pid, syscall.SIGKILL)
		}
	}
	if len(leaks) > 0 {
		time.Sleep(200 * time.Millisecond)
	}
	// Deepest mounts first.
	slices.SortFunc(leaks, func(a, b Leak) int { return len(b.Target) - len(a.Target) })
	for _, l := range leaks {
		switch l.Kind {
		case "mount":
			_ = syscall.Unmount(l.Target, syscall.MNT_DETACH)
		case "cgroup":
			RemoveCgroupTree(l.Target)
		case "socket":
			_ = os.Remove(l.Target)
		}
	}
	for _, l := range leaks {
		if l.Kind == "bundle" {
			_ = os.RemoveAll(l.Target)
		}
	}
}

// RemoveCgroupTree removes a cgroup and its children, bottom up; cgroup
// directories are removed with rmdir, not by deleting their files.
func RemoveCgroupTree(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			RemoveCgroupTree(filepath.Join(dir, e.Name()))
		}
	}
	_ = syscall.Rmdir(dir)
}

// RemoveRuncGroupSockets removes the sockets runc-v2's shim of a group
// leaves behind when it exits (its debug socket too, with containerd 2.x's
// build): the sha256 of address/namespace/group under ShimSocketDir, and
// of that path plus /debug. Each goes once nothing listens on it; the shim
// may take a moment to exit after its last Delete. One still served after
// 10 s is left alone, and logf says so.
func RemoveRuncGroupSockets(c *Containerd, group string, logf func(format string, args ...any)) error {
	var errs []error
	for _, path := range []string{
		shimSocketPath(filepath.Join(c.Address, c.Namespace, group)),
		shimSocketPath(filepath.Join(c.Address, c.Namespace, group, "debug")),
	} {
		errs = append(errs, removeDeadSocket(path, 10*time.Second, logf))
	}
	return errors.Join(errs...)
}

func removeDeadSocket(path string, wait time.Duration, logf func(format string, args ...any)) error {
	for deadline := time.Now().Add(wait); ; time.Sleep(100 * time.Millisecond) {
		if _, err := os.Lstat(path); err != nil {
			return nil
		}
		conn, err := net.Dial("unix", path)
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			logf("socket %s still served %s after the case; left alone", path, wait)
			return nil
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove runc-v2's dead socket %s: %w", path, err)
	}
	return nil
}
