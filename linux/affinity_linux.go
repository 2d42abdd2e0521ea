package linux

import (
	"fmt"
	"os"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/minishim/containerd-shim-mini-v2/linux/initproc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// cpuAffinity is an exec's process.execCPUAffinity, parsed: initial is
// what the process runs on while it joins the container, final what it
// runs on from then on. Either may be nil.
type cpuAffinity struct {
	initial, final *unix.CPUSet
}

func parseCPUAffinity(a *specs.CPUAffinity) (cpuAffinity, error) {
	var out cpuAffinity
	if a == nil {
		return out, nil
	}
	parse := func(field, list string) (*unix.CPUSet, error) {
		list = strings.TrimSpace(list)
		if list == "" {
			return nil, nil
		}
		cpus, err := initproc.ParseCPUList(list)
		if err != nil {
			return nil, fmt.Errorf("process.execCPUAffinity.%s %q: %v: %w", field, list, err, errdefs.ErrInvalidArgument)
		}
		var set unix.CPUSet
		for c := range cpus {
			if c >= 1024 {
				return nil, fmt.Errorf("process.execCPUAffinity.%s %q: cpu %d is above 1023: %w", field, list, c, errdefs.ErrInvalidArgument)
			}
			set.Set(c)
		}
		return &set, nil
	}
	var err error
	if out.initial, err = parse("initial", a.Initial); err != nil {
		return out, err
	}
	out.final, err = parse("final", a.Final)
	return out, err
}

// allCPUs is every cpu a set can name; the kernel keeps of it what the
// process's cpuset allows.
func allCPUs() *unix.CPUSet {
	var set unix.CPUSet
	for c := 0; c < 1024; c++ {
		set.Set(c)
	}
	return &set
}

// shimPinned says whether the shim runs on fewer cpus than are online (say
// containerd was started with an affinity): its children inherit that, so
// a container process is then given back every cpu its cgroup allows, as
// runc does.
func shimPinned() bool {
	var own unix.CPUSet
	if err := unix.SchedGetaffinity(0, &own); err != nil {
		return false
	}
	online, err := onlineCPUCount()
	return err == nil && own.Count() < online
}

func onlineCPUCount() (int, error) {
	data, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return 0, err
	}
	set, err := initproc.ParseCPUList(strings.TrimSpace(string(data)))
	return len(set), err
}
