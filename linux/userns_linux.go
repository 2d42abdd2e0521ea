package linux

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// checkNamespaceFile refuses a namespace path that is not a namespace of
// the type it is listed as (the preamble's setns checks it again).
func checkNamespaceFile(n specs.LinuxNamespace) error {
	f, err := os.Open(n.Path)
	if err != nil {
		return fmt.Errorf("config.json: linux.namespaces: %s namespace %s: %w", n.Type, err, errdefs.ErrInvalidArgument)
	}
	defer f.Close()
	got, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil {
		return fmt.Errorf("config.json: linux.namespaces: %s path %s is not a namespace file: %w", n.Type, n.Path, errdefs.ErrInvalidArgument)
	}
	if want := namespaceFlags[n.Type]; uintptr(got) != want {
		return fmt.Errorf("config.json: linux.namespaces: %s path %s is a namespace of another type: %w", n.Type, n.Path, errdefs.ErrInvalidArgument)
	}
	return nil
}

var procNsUser = regexp.MustCompile(`^/proc/([0-9]+|self)/ns/user$`)

// checkJoinedIDMaps checks mappings given with a joined user namespace
// against the namespace's own, where a process of it names it
// (/proc/PID/ns/user, what CRI gives a pod's containers): they decide the
// host ids of idmapped mounts and of the cgroup's owner, so they must be
// the namespace's.
func checkJoinedIDMaps(path string, lx *specs.Linux) error {
	m := procNsUser.FindStringSubmatch(path)
	if m == nil {
		return nil
	}
	for _, c := range []struct {
		field, file string
		want        []specs.LinuxIDMapping
	}{{"linux.uidMappings", "uid_map", lx.UIDMappings}, {"linux.gidMappings", "gid_map", lx.GIDMappings}} {
		if len(c.want) == 0 {
			continue
		}
		have, err := readIDMap(m[1], c.file)
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("config.json: linux.namespaces: user namespace %s: process %s is gone: %w", path, m[1], errdefs.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("config.json: linux.namespaces: user namespace %s: %w", path, err)
		}
		if !sameIDMaps(have, c.want) {
			return fmt.Errorf("config.json: %s differ from the mappings of the joined user namespace %s (%q): %w",
				c.field, path, idMapText(have), errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// readIDMap reads process pid's uid_map or gid_map (file).
func readIDMap(pid, file string) ([]specs.LinuxIDMapping, error) {
	text, err := os.ReadFile("/proc/" + pid + "/" + file)
	if err != nil {
		return nil, err
	}
	return parseIDMapText(string(text))
}

// writeIDMaps maps the ids of the new user namespace process pid created.
func writeIDMaps(pid int, uidMap, gidMap []specs.LinuxIDMapping) error {
	dir := "/proc/" + strconv.Itoa(pid) + "/"
	for _, f := range []struct {
		file   string
		ranges []specs.LinuxIDMapping
	}{{"uid_map", uidMap}, {"gid_map", gidMap}} {
		if err := os.WriteFile(dir+f.file, []byte(idMapText(f.ranges)), 0); err != nil {
			return fmt.Errorf("write the user namespace's %s: %w", f.file, err)
		}
	}
	return nil
}
