package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Proc is one process seen in /proc.
type Proc struct {
	Pid  int
	Argv []string
}

// Name is the base name of argv[0].
func (p Proc) Name() string {
	if len(p.Argv) == 0 {
		return ""
	}
	return filepath.Base(p.Argv[0])
}

// HasArg reports whether arg is one of the arguments (argv[1:]).
func (p Proc) HasArg(arg string) bool {
	return len(p.Argv) > 1 && slices.Contains(p.Argv[1:], arg)
}

// HasArgPair reports whether flag is directly followed by value.
func (p Proc) HasArgPair(flag, value string) bool {
	for i := 1; i+1 < len(p.Argv); i++ {
		if p.Argv[i] == flag && p.Argv[i+1] == value {
			return true
		}
	}
	return false
}

// CmdlineString is argv joined by spaces.
func (p Proc) CmdlineString() string { return strings.Join(p.Argv, " ") }

// Cgroups returns the cgroup paths of the process, one per hierarchy line
// of /proc/PID/cgroup ("4:memory:/minitest/id" → "/minitest/id").
func (p Proc) Cgroups() []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", p.Pid))
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if parts := strings.SplitN(line, ":", 3); len(parts) == 3 {
			out = append(out, parts[2])
		}
	}
	return out
}

// Processes lists the processes visible now; ones that vanish while being
// read are skipped.
func Processes() []Proc {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var out []Proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(data) == 0 {
			continue // gone, or a kernel thread
		}
		argv := strings.Split(string(bytes.TrimRight(data, "\x00")), "\x00")
		out = append(out, Proc{Pid: pid, Argv: argv})
	}
	return out
}

// ProcessesMatching lists the processes keep accepts.
func ProcessesMatching(keep func(Proc) bool) []Proc {
	var out []Proc
	for _, p := range Processes() {
		if keep(p) {
			out = append(out, p)
		}
	}
	return out
}

// ShimProcess finds the long-running shim of runtime serving container id
// for the daemon c: the process named after the runtime's binary whose
// arguments carry "-id ID" and "-address <c's socket>". The short-lived
// `start` invocation is excluded.
func (c *Containerd) ShimProcess(runtime, id string) (Proc, bool) {
	name := ShimBinaryName(runtime)
	for _, p := range Processes() {
		if p.Name() == name && p.HasArgPair("-id", id) && p.HasArgPair("-address", c.Address) && !p.HasArg("start") {
			return p, true
		}
	}
	return Proc{}, false
}

// MemoryUsage is what /proc/PID/smaps_rollup says about a process, in KiB.
type MemoryUsage struct {
	RssKiB       int
	PssKiB       int
	AnonymousKiB int
}

// ReadMemoryUsage reads Rss, Pss and Anonymous of pid from smaps_rollup.
func ReadMemoryUsage(pid int) (MemoryUsage, error) {
	path := fmt.Sprintf("/proc/%d/smaps_rollup", pid)
	f, err := os.Open(path)
	if err != nil {
		return MemoryUsage{}, fmt.Errorf("read memory of pid %d: %w", pid, err)
	}
	defer f.Close()
	var m MemoryUsage
	fields := map[string]*int{"Rss:": &m.RssKiB, "Pss:": &m.PssKiB, "Anonymous:": &m.AnonymousKiB}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Fields(sc.Text())
		if len(parts) < 2 {
			continue
		}
		if dst, ok := fields[parts[0]]; ok {
			n, err := strconv.Atoi(parts[1])
			if err != nil {
				return MemoryUsage{}, fmt.Errorf("parse %s in %s: %w", parts[0], path, err)
			}
			*dst = n
		}
	}
	if err := sc.Err(); err != nil {
		return MemoryUsage{}, fmt.Errorf("read %s: %w", path, err)
	}
	return m, nil
}

// ProcStatusField is the value of field ("Threads", "Seccomp", ...) in
// /proc/PID/status, trimmed; "" when the file has no such field.
func ProcStatusField(pid int, field string) (string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", nil
}

// ShimParent is the parent of pid, which must be runtime's shim: the shim
// whose child a container's init is.
func ShimParent(pid int, runtime string) (int, error) {
	ppid, err := ProcStatusField(pid, "PPid")
	if err != nil {
		return 0, err
	}
	parent, err := strconv.Atoi(ppid)
	if err != nil {
		return 0, fmt.Errorf("PPid of %d: %q", pid, ppid)
	}
	// comm holds the first 15 bytes of the name.
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", parent))
	if err != nil || !strings.HasPrefix(ShimBinaryName(runtime), strings.TrimSpace(string(comm))) {
		return parent, fmt.Errorf("the parent %d of %d is %q, not a %s (%v)", parent, pid, comm, ShimBinaryName(runtime), err)
	}
	return parent, nil
}
