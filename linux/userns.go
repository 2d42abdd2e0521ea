package linux

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/minishim/containerd-shim-mini-v2/linux/initproc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// checkUserNamespace checks linux.uidMappings and gidMappings against the
// container's user namespace: mappings only with one, both of them for a
// new one, each well formed, and ids 0 (what the setup runs as) and the
// process's own mapped.
func checkUserNamespace(lx *specs.Linux, hasUserNS, newUserNS bool) error {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("config.json: "+format+": %w", append(args, errdefs.ErrInvalidArgument)...)
	}
	if !hasUserNS {
		if len(lx.UIDMappings)+len(lx.GIDMappings) > 0 {
			return invalid("linux.uidMappings/gidMappings are set but linux.namespaces has no user namespace")
		}
		return nil
	}
	if newUserNS && (len(lx.UIDMappings) == 0 || len(lx.GIDMappings) == 0) {
		return invalid("linux.namespaces: a new user namespace needs both linux.uidMappings and linux.gidMappings")
	}
	for _, m := range []struct {
		field  string
		ranges []specs.LinuxIDMapping
	}{{"linux.uidMappings", lx.UIDMappings}, {"linux.gidMappings", lx.GIDMappings}} {
		if err := initproc.CheckIDMappings(m.field, m.ranges); err != nil {
			return err
		}
		if newUserNS && !idMapped(m.ranges, 0) {
			return invalid("%s does not map id 0 of the container, which its setup runs as", m.field)
		}
	}
	return nil
}

// checkProcessMapped checks that a process's user and groups exist in its
// user namespace's mappings (the kernel refuses to switch to an unmapped
// id); what names the process in the error.
func checkProcessMapped(what string, u specs.User, uidMap, gidMap []specs.LinuxIDMapping) error {
	if len(uidMap) > 0 && !idMapped(uidMap, u.UID) {
		return fmt.Errorf("%s: user.uid %d is not mapped by linux.uidMappings: %w", what, u.UID, errdefs.ErrInvalidArgument)
	}
	if len(gidMap) == 0 {
		return nil
	}
	for _, g := range append([]uint32{u.GID}, u.AdditionalGids...) {
		if !idMapped(gidMap, g) {
			return fmt.Errorf("%s: gid %d of user (gid, additionalGids) is not mapped by linux.gidMappings: %w", what, g, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// idMapped says whether container id is in one of the ranges.
func idMapped(ranges []specs.LinuxIDMapping, id uint32) bool {
	_, ok := hostID(ranges, id)
	return ok
}

// hostID is the host id that container id maps to.
func hostID(ranges []specs.LinuxIDMapping, id uint32) (uint32, bool) {
	for _, m := range ranges {
		if id >= m.ContainerID && uint64(id) < uint64(m.ContainerID)+uint64(m.Size) {
			return m.HostID + (id - m.ContainerID), true
		}
	}
	return 0, false
}

// idMapText is the ranges in uid_map's format, which the kernel takes in one
// write.
func idMapText(ranges []specs.LinuxIDMapping) string {
	var b strings.Builder
	for _, m := range ranges {
		fmt.Fprintf(&b, "%d %d %d\n", m.ContainerID, m.HostID, m.Size)
	}
	return b.String()
}

// sameIDMaps compares mappings as sets of ranges.
func sameIDMaps(a, b []specs.LinuxIDMapping) bool {
	byRange := func(x, y specs.LinuxIDMapping) int {
		return cmp.Or(cmp.Compare(x.ContainerID, y.ContainerID), cmp.Compare(x.HostID, y.HostID), cmp.Compare(x.Size, y.Size))
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, byRange)
	slices.SortFunc(b, byRange)
	return slices.Equal(a, b)
}

// parseIDMapText reads a /proc/PID/uid_map.
func parseIDMapText(text string) ([]specs.LinuxIDMapping, error) {
	var out []specs.LinuxIDMapping
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if line == "" {
			continue
		}
		var m specs.LinuxIDMapping
		if _, err := fmt.Sscan(line, &m.ContainerID, &m.HostID, &m.Size); err != nil {
			return nil, fmt.Errorf("id map line %q: %w", line, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// timeClocks are the clocks a time namespace offsets.
var timeClocks = []string{"boottime", "monotonic"}

// checkTimeOffsets checks linux.timeOffsets against the container's time
// namespace: offsets only for a new one (the kernel takes them before any
// process entered it), only for the clocks it has.
func checkTimeOffsets(offsets map[string]specs.LinuxTimeOffset, hasTimeNS, newTimeNS bool) error {
	if len(offsets) == 0 {
		return nil
	}
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("config.json: linux.timeOffsets: "+format+": %w", append(args, errdefs.ErrInvalidArgument)...)
	}
	if !hasTimeNS {
		return invalid("set, but linux.namespaces has no time namespace")
	}
	if !newTimeNS {
		return invalid("set, but the time namespace is joined by path, and offsets can only be given to a new one")
	}
	for _, clock := range slices.Sorted(maps.Keys(offsets)) {
		if !slices.Contains(timeClocks, clock) {
			return invalid("clock %q has no offset in a time namespace (only %s do)", clock, strings.Join(timeClocks, " and "))
		}
		if offsets[clock].Nanosecs >= 1e9 {
			return invalid("%s: nanosecs %d is not below one second", clock, offsets[clock].Nanosecs)
		}
	}
	return nil
}
