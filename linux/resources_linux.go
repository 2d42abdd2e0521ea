package linux

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/minishim/containerd-shim-mini-v2/linux/initproc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ValidateResources refuses resource values the kernel would refuse less
// clearly (or, for some, accept and misread), naming the field.
func ValidateResources(r *specs.LinuxResources) error {
	if r == nil {
		return nil
	}
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("linux.resources."+format+": %w", append(args, errdefs.ErrInvalidArgument)...)
	}
	if m := r.Memory; m != nil {
		for name, v := range map[string]*int64{"limit": m.Limit, "reservation": m.Reservation, "swap": m.Swap, "kernel": m.Kernel, "kernelTCP": m.KernelTCP} {
			if v != nil && *v < -1 {
				return invalid("memory.%s %d is negative (-1 means unlimited)", name, *v)
			}
		}
		if m.Swappiness != nil && *m.Swappiness > 100 {
			return invalid("memory.swappiness %d is over 100", *m.Swappiness)
		}
		// The spec's swap is memory plus swap, as cgroup v1 counts it.
		if m.Swap != nil && m.Limit != nil && *m.Swap > 0 && *m.Limit > 0 && *m.Swap < *m.Limit {
			return invalid("memory.swap %d is below memory.limit %d (swap counts memory plus swap)", *m.Swap, *m.Limit)
		}
	}
	if c := r.CPU; c != nil {
		if c.Quota != nil && *c.Quota < -1 {
			return invalid("cpu.quota %d is negative (-1 means unlimited)", *c.Quota)
		}
		if c.Period != nil && *c.Period != 0 && (*c.Period < 1000 || *c.Period > 1000000) {
			return invalid("cpu.period %d is outside 1000..1000000 microseconds", *c.Period)
		}
		if c.Cpus != "" {
			if err := checkCPUList("cpu.cpus", c.Cpus, "/sys/devices/system/cpu/online"); err != nil {
				return err
			}
		}
		if c.Mems != "" {
			if err := checkCPUList("cpu.mems", c.Mems, "/sys/devices/system/node/online"); err != nil {
				return err
			}
		}
	}
	if p := r.Pids; p != nil && p.Limit != nil && *p.Limit < -1 {
		return invalid("pids.limit %d is negative (-1 or 0 means unlimited)", *p.Limit)
	}
	if b := r.BlockIO; b != nil && b.Weight != nil && *b.Weight != 0 && (*b.Weight < 10 || *b.Weight > 1000) {
		return invalid("blockIO.weight %d is outside 10..1000", *b.Weight)
	}
	for i, d := range r.Devices {
		switch d.Type {
		case "", "a", "b", "c":
		default:
			return invalid("devices[%d].type %q is not one of a, b, c", i, d.Type)
		}
		for _, ch := range d.Access {
			if !strings.ContainsRune("rwm", ch) {
				return invalid("devices[%d].access %q may only hold r, w and m", i, d.Access)
			}
		}
	}
	return nil
}

// checkCPUList parses a cpuset list ("0-3,5") and checks every entry is in
// the host's online set read from onlinePath.
func checkCPUList(field, list, onlinePath string) error {
	want, err := initproc.ParseCPUList(list)
	if err != nil {
		return fmt.Errorf("linux.resources.%s %q: %v: %w", field, list, err, errdefs.ErrInvalidArgument)
	}
	data, err := os.ReadFile(onlinePath)
	if err != nil {
		// Without the host's list the kernel is left to judge.
		return nil
	}
	online, err := initproc.ParseCPUList(strings.TrimSpace(string(data)))
	if err != nil {
		return nil
	}
	// In order, so the error names the same cpu every time.
	for _, n := range slices.Sorted(maps.Keys(want)) {
		if !online[n] {
			return fmt.Errorf("linux.resources.%s %q: %d is not online on this host (online: %s): %w",
				field, list, n, strings.TrimSpace(string(data)), errdefs.ErrInvalidArgument)
		}
	}
	return nil
}
