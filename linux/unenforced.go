package linux

import (
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/minishim/containerd-shim-mini-v2/linux/initproc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A spec field this runtime does not enforce must never be skipped: the
// container would run with less confinement (or less of what it asked for)
// than its spec says. Each such field makes Create, or an exec's Start, fail
// with Unimplemented, naming it. A field leaves these lists when it is
// implemented.

// unenforcedSpecField names the first container-wide field that is set and
// not enforced yet, or returns "".
func unenforcedSpecField(s *specs.Spec) string {
	if l := s.Linux; l != nil {
		switch {
		case l.IntelRdt != nil:
			return "linux.intelRdt (where resctrl is mounted)"
		case len(l.NetDevices) > 0:
			return "linux.netDevices"
		}
	}
	return ""
}

// checkEnforced refuses a container spec with a field this runtime would
// not enforce.
func checkEnforced(spec *specs.Spec) error {
	if spec.Linux != nil && spec.Linux.IntelRdt != nil && !resctrlMounted() {
		// What runc says too: without resctrl there is nothing to apply.
		return fmt.Errorf("config.json: linux.intelRdt is set, but Intel RDT (the resctrl filesystem) is not available on this host: %w", errdefs.ErrFailedPrecondition)
	}
	if f := unenforcedSpecField(spec); f != "" {
		return fmt.Errorf("config.json: %s is not supported by this runtime yet, and a container never runs with less than its spec asks for: %w", f, errdefs.ErrNotImplemented)
	}
	// Every field of a process (init's or an exec's) is enforced.
	return nil
}

// resctrlMounted says whether the host has Intel RDT's resctrl filesystem
// mounted.
func resctrlMounted() bool {
	mounts, err := initproc.ReadMountinfo("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, m := range mounts {
		if m.FSType == "resctrl" {
			return true
		}
	}
	return false
}
