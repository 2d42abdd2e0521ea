package initproc

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The per-process kernel settings a container process applies to itself
// before it reports ready: scheduling (process.scheduler), I/O priority
// (process.ioPriority), execution domain (linux.personality) and NUMA
// memory policy (linux.memoryPolicy). They are checked in the shim (at
// Create, or an exec's Exec) and applied in the process, for init and every
// exec, as runc does.

var schedPolicies = map[specs.LinuxSchedulerPolicy]uint32{
	specs.SchedOther: 0, specs.SchedFIFO: 1, specs.SchedRR: 2, specs.SchedBatch: 3,
	specs.SchedISO: 4, specs.SchedIdle: 5, specs.SchedDeadline: 6,
}

var schedFlags = map[specs.LinuxSchedulerFlag]uint64{
	specs.SchedFlagResetOnFork: 0x01, specs.SchedFlagReclaim: 0x02, specs.SchedFlagDLOverrun: 0x04,
	specs.SchedFlagKeepPolicy: 0x08, specs.SchedFlagKeepParams: 0x10,
	specs.SchedFlagUtilClampMin: 0x20, specs.SchedFlagUtilClampMax: 0x40,
}

var ioprioClasses = map[specs.IOPriorityClass]int{
	specs.IOPRIO_CLASS_RT: 1, specs.IOPRIO_CLASS_BE: 2, specs.IOPRIO_CLASS_IDLE: 3,
}

var personalityDomains = map[specs.LinuxPersonalityDomain]uintptr{
	specs.PerLinux: 0x0000, specs.PerLinux32: 0x0008,
}

var mempolicyModes = map[specs.MemoryPolicyModeType]int{
	specs.MpolDefault: 0, specs.MpolPreferred: 1, specs.MpolBind: 2, specs.MpolInterleave: 3,
	specs.MpolLocal: 4, specs.MpolPreferredMany: 5, specs.MpolWeightedInterleave: 6,
}

var mempolicyFlags = map[specs.MemoryPolicyFlagType]int{
	specs.MpolFNumaBalancing: 1 << 13, specs.MpolFRelativeNodes: 1 << 14, specs.MpolFStaticNodes: 1 << 15,
}

// maxNUMANode is the highest node a policy may name: SetMemPolicy's mask
// holds 1024 bits, of which the kernel reads one fewer.
const maxNUMANode = 1022

// schedAttr turns process.scheduler into sched_setattr's argument.
func schedAttr(s *specs.Scheduler) (*unix.SchedAttr, error) {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("process.scheduler."+format+": %w", append(args, errdefs.ErrInvalidArgument)...)
	}
	policy, ok := schedPolicies[s.Policy]
	if !ok {
		return nil, invalid("policy %q is not a scheduling policy (one of %v)", s.Policy, slices.Sorted(maps.Keys(schedPolicies)))
	}
	attr := &unix.SchedAttr{Policy: policy, Nice: s.Nice, Priority: uint32(s.Priority), Runtime: s.Runtime, Deadline: s.Deadline, Period: s.Period}
	for _, f := range s.Flags {
		bit, ok := schedFlags[f]
		if !ok {
			return nil, invalid("flags: %q is not a scheduling flag", f)
		}
		attr.Flags |= bit
	}
	switch s.Policy {
	case specs.SchedOther, specs.SchedBatch:
		if s.Nice < -20 || s.Nice > 19 {
			return nil, invalid("nice %d is outside -20..19", s.Nice)
		}
	default:
		if s.Nice != 0 {
			return nil, invalid("nice is only for SCHED_OTHER and SCHED_BATCH")
		}
	}
	if s.Priority != 0 && s.Policy != specs.SchedFIFO && s.Policy != specs.SchedRR {
		return nil, invalid("priority is only for SCHED_FIFO and SCHED_RR")
	}
	if s.Priority < 0 {
		return nil, invalid("priority %d is negative", s.Priority)
	}
	if (s.Runtime != 0 || s.Deadline != 0 || s.Period != 0) && s.Policy != specs.SchedDeadline {
		return nil, invalid("runtime, deadline and period are only for SCHED_DEADLINE")
	}
	return attr, nil
}

// ioprioValue turns process.ioPriority into ioprio_set's value.
func ioprioValue(p *specs.LinuxIOPriority) (int, error) {
	class, ok := ioprioClasses[p.Class]
	if !ok {
		return 0, fmt.Errorf("process.ioPriority.class %q is not one of IOPRIO_CLASS_RT, IOPRIO_CLASS_BE, IOPRIO_CLASS_IDLE: %w", p.Class, errdefs.ErrInvalidArgument)
	}
	if p.Priority < 0 || p.Priority > 7 {
		return 0, fmt.Errorf("process.ioPriority.priority %d is outside 0..7: %w", p.Priority, errdefs.ErrInvalidArgument)
	}
	return class<<13 | p.Priority, nil
}

func personalityValue(p *specs.LinuxPersonality) (uintptr, error) {
	v, ok := personalityDomains[p.Domain]
	if !ok {
		return 0, fmt.Errorf("linux.personality.domain %q is not LINUX or LINUX32: %w", p.Domain, errdefs.ErrInvalidArgument)
	}
	if len(p.Flags) > 0 {
		// The runtime spec defines none; one this runtime cannot apply is
		// refused rather than skipped.
		return 0, fmt.Errorf("linux.personality.flags %v: no flags are defined: %w", p.Flags, errdefs.ErrInvalidArgument)
	}
	return v, nil
}

// mempolicy turns linux.memoryPolicy into set_mempolicy's mode and mask.
func mempolicy(m *specs.LinuxMemoryPolicy) (int, *unix.CPUSet, error) {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("linux.memoryPolicy."+format+": %w", append(args, errdefs.ErrInvalidArgument)...)
	}
	mode, ok := mempolicyModes[m.Mode]
	if !ok {
		return 0, nil, invalid("mode %q is not a memory policy mode", m.Mode)
	}
	for _, f := range m.Flags {
		bit, ok := mempolicyFlags[f]
		if !ok {
			return 0, nil, invalid("flags: %q is not a memory policy flag", f)
		}
		mode |= bit
	}
	var mask unix.CPUSet
	nodes := 0
	if m.Nodes != "" {
		set, err := ParseCPUList(m.Nodes)
		if err != nil {
			return 0, nil, invalid("nodes %q: %v", m.Nodes, err)
		}
		for n := range set {
			if n > maxNUMANode {
				return 0, nil, invalid("nodes %q: node %d is above %d", m.Nodes, n, maxNUMANode)
			}
			mask.Set(n)
		}
		nodes = len(set)
	}
	switch m.Mode {
	case specs.MpolDefault, specs.MpolLocal:
		if nodes > 0 {
			return 0, nil, invalid("nodes must be empty for %s", m.Mode)
		}
	case specs.MpolBind, specs.MpolInterleave, specs.MpolPreferredMany, specs.MpolWeightedInterleave:
		if nodes == 0 {
			return 0, nil, invalid("nodes must name at least one node for %s", m.Mode)
		}
	}
	return mode, &mask, nil
}

// CheckProcessAttrs checks what applyProcessAttrs will apply, in the shim.
func CheckProcessAttrs(p *specs.Process, lx *specs.Linux) error {
	if p.Scheduler != nil {
		if _, err := schedAttr(p.Scheduler); err != nil {
			return err
		}
	}
	if p.IOPriority != nil {
		if _, err := ioprioValue(p.IOPriority); err != nil {
			return err
		}
	}
	if lx != nil && lx.Personality != nil {
		if _, err := personalityValue(lx.Personality); err != nil {
			return err
		}
	}
	if lx != nil && lx.MemoryPolicy != nil {
		if _, _, err := mempolicy(lx.MemoryPolicy); err != nil {
			return err
		}
	}
	return nil
}

// applyProcessAttrs sets them on the calling thread, which goes on to
// execve the user's program: all four are kept across execve and passed
// to children.
func applyProcessAttrs(p *specs.Process, personality *specs.LinuxPersonality, policy *specs.LinuxMemoryPolicy) error {
	if p.Scheduler != nil {
		attr, err := schedAttr(p.Scheduler)
		if err != nil {
			return err
		}
		if err := unix.SchedSetAttr(0, attr, 0); err != nil {
			return fmt.Errorf("process.scheduler: sched_setattr %s: %w", p.Scheduler.Policy, err)
		}
	}
	if p.IOPriority != nil {
		v, err := ioprioValue(p.IOPriority)
		if err != nil {
			return err
		}
		// This thread (it becomes the process at execve), not runc's
		// process group, which here would take in the shim too.
		const ioprioWhoProcess = 1
		if _, _, errno := unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, 0, uintptr(v)); errno != 0 {
			return fmt.Errorf("process.ioPriority: ioprio_set %s %d: %w", p.IOPriority.Class, p.IOPriority.Priority, errno)
		}
	}
	if personality != nil {
		v, err := personalityValue(personality)
		if err != nil {
			return err
		}
		if _, _, errno := unix.Syscall(unix.SYS_PERSONALITY, v, 0, 0); errno != 0 {
			return fmt.Errorf("linux.personality: personality %s: %w", personality.Domain, errno)
		}
	}
	if policy != nil {
		mode, mask, err := mempolicy(policy)
		if err != nil {
			return err
		}
		if err := unix.SetMemPolicy(mode, mask); err != nil {
			return fmt.Errorf("linux.memoryPolicy: set_mempolicy %s %q: %w", policy.Mode, policy.Nodes, err)
		}
	}
	return nil
}

// ParseCPUList reads a cpu list as the kernel writes them ("0-3,8").
func ParseCPUList(list string) (map[int]bool, error) {
	set := map[int]bool{}
	for _, part := range strings.Split(list, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("bad entry %q", part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("bad range %q", part)
			}
		}
		if b-a > 1<<16 {
			return nil, fmt.Errorf("range %q is too large", part)
		}
		for n := a; n <= b; n++ {
			set[n] = true
		}
	}
	return set, nil
}
