package linux

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
)

// cgroupPlacement is where a container's cgroup lives and who makes it.
type cgroupPlacement struct {
	// Path is the cgroup's path inside the hierarchy (v2) or inside every
	// controller's hierarchy (v1).
	Path string
	// Unit and Slice are set for the systemd driver: the transient scope
	// unit systemd creates, and the slice it goes in.
	Unit  string
	Slice string
}

const (
	// defaultSlice holds systemd-driver containers whose path names none.
	defaultSlice = "system.slice"
	// systemdUnitPrefix names the scope of a container without a
	// cgroupsPath under the systemd driver (runc uses "runc").
	systemdUnitPrefix = "mini"
)

// isSystemdCgroupsPath says whether p has the systemd driver's
// "slice:prefix:name" form.
func isSystemdCgroupsPath(p string) bool {
	return strings.Count(p, ":") == 2 && !strings.HasPrefix(p, "/")
}

// placeCgroup decides a container's cgroup from the spec's cgroupsPath.
// The systemd driver is used when the runtime options ask for it
// (SystemdCgroup) or the path has its "slice:prefix:name" form, which
// containerd's CRI writes when the kubelet's cgroup parent is a slice.
// Under the cgroupfs driver an empty path becomes /<id>, as with runc.
func placeCgroup(cgroupsPath, id string, systemd bool) (cgroupPlacement, error) {
	if systemd || isSystemdCgroupsPath(cgroupsPath) {
		return placeSystemdCgroup(cgroupsPath, id)
	}
	p := cgroupsPath
	if p == "" {
		if id == "" {
			return cgroupPlacement{}, nil
		}
		p = "/" + id
	}
	clean, err := cleanCgroupfsPath("config.json: linux.cgroupsPath", p)
	if err != nil {
		return cgroupPlacement{}, err
	}
	return cgroupPlacement{Path: clean}, nil
}

// cleanCgroupfsPath is p as an absolute cgroupfs path, refused when a ".."
// would take it out of its parent, or when it holds a newline or NUL (the
// kernel names no cgroup so, and the preamble reads paths a line each);
// what names where p came from.
func cleanCgroupfsPath(what, p string) (string, error) {
	if slices.Contains(strings.Split(p, "/"), "..") {
		return "", fmt.Errorf("%s %q escapes its parent: %w", what, p, errdefs.ErrInvalidArgument)
	}
	if strings.ContainsAny(p, "\n\x00") {
		return "", fmt.Errorf("%s %q holds a newline or NUL: %w", what, p, errdefs.ErrInvalidArgument)
	}
	return path.Clean("/" + p), nil
}

// placeSystemdCgroup reads "slice:prefix:name": the container gets the
// scope unit "prefix-name.scope" in the slice, whose dashes are its
// ancestry ("a-b.slice" is "a.slice/a-b.slice"); an empty slice is
// system.slice and "-.slice" the root.
func placeSystemdCgroup(cgroupsPath, id string) (cgroupPlacement, error) {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("config.json: linux.cgroupsPath %q: %s: %w", cgroupsPath, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
	}
	p := cgroupsPath
	if p == "" {
		if id == "" {
			return cgroupPlacement{}, nil
		}
		p = ":" + systemdUnitPrefix + ":" + id
	}
	if !isSystemdCgroupsPath(p) {
		return cgroupPlacement{}, invalid(`the systemd cgroup driver (SystemdCgroup = true) expects the form "slice:prefix:name"`)
	}
	parts := strings.SplitN(p, ":", 3)
	slice, prefix, name := parts[0], parts[1], parts[2]
	if slice == "" {
		slice = defaultSlice
	}
	sliceDir, err := expandSlice(slice)
	if err != nil {
		return cgroupPlacement{}, invalid("%v", err)
	}
	if name == "" {
		return cgroupPlacement{}, invalid("the name part is empty")
	}
	if strings.HasSuffix(name, ".slice") {
		return cgroupPlacement{}, fmt.Errorf("config.json: linux.cgroupsPath %q: a slice as the container's own unit is not supported, only scopes: %w", cgroupsPath, errdefs.ErrNotImplemented)
	}
	unit := name + ".scope"
	if prefix != "" {
		unit = prefix + "-" + unit
	}
	if err := checkUnitName(unit); err != nil {
		return cgroupPlacement{}, invalid("%v", err)
	}
	return cgroupPlacement{Path: path.Join(sliceDir, unit), Unit: unit, Slice: slice}, nil
}

// expandSlice turns a slice name into its directory: every dash starts a
// child of the slice before it.
func expandSlice(slice string) (string, error) {
	base, ok := strings.CutSuffix(slice, ".slice")
	if !ok || base == "" {
		return "", fmt.Errorf("slice %q does not end in .slice", slice)
	}
	if err := checkUnitName(slice); err != nil {
		return "", err
	}
	if base == "-" {
		return "/", nil
	}
	if strings.HasPrefix(base, "-") || strings.HasSuffix(base, "-") || strings.Contains(base, "--") {
		return "", fmt.Errorf("slice %q has an empty part between dashes", slice)
	}
	dir := "/"
	prefix := ""
	for _, part := range strings.Split(base, "-") {
		prefix += part
		dir = path.Join(dir, prefix+".slice")
		prefix += "-"
	}
	return dir, nil
}

// checkUnitName allows what systemd allows in a unit name, which keeps
// slashes (and with them any escape from the slice) out.
func checkUnitName(name string) error {
	if len(name) > 255 {
		return fmt.Errorf("unit name %q is longer than 255 bytes", name)
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune(":-_.\\@", r):
		default:
			return fmt.Errorf("unit name %q has %q, which systemd does not allow", name, r)
		}
	}
	return nil
}
