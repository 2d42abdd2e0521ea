package linux

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// maxIDMapLines is the kernel's limit of lines in a uid_map or gid_map.
const maxIDMapLines = 340

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
		if err := checkIDMappings(m.field, m.ranges); err != nil {
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

// checkIDMappings refuses what the kernel would: an empty range, one past
// the 32-bit id space, ranges that overlap on either side, too many lines.
func checkIDMappings(field string, ranges []specs.LinuxIDMapping) error {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("config.json: %s: "+format+": %w", append(append([]any{field}, args...), errdefs.ErrInvalidArgument)...)
	}
	if len(ranges) > maxIDMapLines {
		return invalid("%d ranges, more than the kernel's %d", len(ranges), maxIDMapLines)
	}
	for i, m := range ranges {
		switch {
		case m.Size == 0:
			return invalid("[%d] has size 0", i)
		case uint64(m.ContainerID)+uint64(m.Size) > math.MaxUint32+1:
			return invalid("[%d] (containerID %d, size %d) goes past the last id", i, m.ContainerID, m.Size)
		case uint64(m.HostID)+uint64(m.Size) > math.MaxUint32+1:
			return invalid("[%d] (hostID %d, size %d) goes past the last id", i, m.HostID, m.Size)
		}
		for j, o := range ranges[:i] {
			if overlaps(m.ContainerID, m.Size, o.ContainerID, o.Size) {
				return invalid("[%d] and [%d] overlap in containerID", j, i)
			}
			if overlaps(m.HostID, m.Size, o.HostID, o.Size) {
				return invalid("[%d] and [%d] overlap in hostID", j, i)
			}
		}
	}
	return nil
}

func overlaps(a, asize, b, bsize uint32) bool {
	return uint64(a) < uint64(b)+uint64(bsize) && uint64(b) < uint64(a)+uint64(asize)
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
