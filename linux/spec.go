package linux

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/minishim/containerd-shim-mini-v2/runtimeopts"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/minishim/containerd-shim-mini-v2/linux/hooks"
	"github.com/minishim/containerd-shim-mini-v2/linux/initproc"
)

// LoadSpec reads and checks bundle/config.json.
func LoadSpec(bundle string) (*specs.Spec, error) {
	spec, err := readSpec(bundle)
	if err != nil {
		return nil, err
	}
	if err := validateSpec(spec); err != nil {
		return nil, err
	}
	return spec, nil
}

// maxSpecBytes bounds config.json: a spec is a few KiB, a big one with
// annotations and a seccomp profile some hundreds; whatever is far larger
// is not one to read into memory.
const maxSpecBytes = 16 << 20

// readSpec parses bundle/config.json without checking it.
func readSpec(bundle string) (*specs.Spec, error) {
	if fi, err := os.Lstat(bundle); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		// containerd makes the bundle a directory; a symlink could point
		// the shim's mounts and state anywhere.
		return nil, fmt.Errorf("bundle %s is a symlink, not a directory: %w", bundle, errdefs.ErrInvalidArgument)
	}
	path := filepath.Join(bundle, "config.json")
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("config.json: %s does not exist: %w", path, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("config.json: read %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSpecBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config.json: read %s: %w", path, err)
	}
	if len(data) > maxSpecBytes {
		return nil, fmt.Errorf("config.json: %s is larger than %d MiB: %w", path, maxSpecBytes>>20, errdefs.ErrInvalidArgument)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("config.json: %s is not a valid runtime spec: %v: %w", path, err, errdefs.ErrInvalidArgument)
	}
	return &spec, nil
}

func validateSpec(spec *specs.Spec) error {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("config.json: "+format+": %w", append(args, errdefs.ErrInvalidArgument)...)
	}
	if spec.Process == nil {
		return invalid("process is missing")
	}
	if len(spec.Process.Args) == 0 || spec.Process.Args[0] == "" {
		return invalid("process.args is empty")
	}
	if spec.Process.Cwd != "" && !filepath.IsAbs(spec.Process.Cwd) {
		return invalid("process.cwd %q is not an absolute path", spec.Process.Cwd)
	}
	if spec.Root == nil || spec.Root.Path == "" {
		return invalid("root.path is empty")
	}
	if spec.Linux == nil {
		return invalid("linux section is missing")
	}
	if err := checkEnforced(spec); err != nil {
		return err
	}
	if err := hooks.Validate(spec.Hooks); err != nil {
		return err
	}
	if err := initproc.CheckProcessAttrs(spec.Process, spec.Linux); err != nil {
		return fmt.Errorf("config.json: %w", err)
	}
	if err := initproc.CheckSELinuxLabel("config.json: process.selinuxLabel", spec.Process.SelinuxLabel); err != nil {
		return err
	}
	ns, err := namespacesOf(spec)
	if err != nil {
		return err
	}
	// Checked once here, at load; the preamble opens them again anyway.
	for _, n := range spec.Linux.Namespaces {
		if n.Path == "" {
			continue
		}
		if _, err := os.Stat(n.Path); err != nil {
			var class error = errdefs.ErrInvalidArgument
			switch {
			case errors.Is(err, os.ErrNotExist):
				class = errdefs.ErrNotFound
			case errors.Is(err, os.ErrPermission):
				class = errdefs.ErrPermissionDenied
			}
			return fmt.Errorf("config.json: linux.namespaces: %s namespace %s: %w", n.Type, err, class)
		}
		if err := checkNamespaceFile(n); err != nil {
			return err
		}
		if n.Type == specs.UserNamespace {
			if err := checkJoinedIDMaps(n.Path, spec.Linux); err != nil {
				return err
			}
		}
	}
	if err := checkProcessMapped("config.json: process", spec.Process.User, spec.Linux.UIDMappings, spec.Linux.GIDMappings); err != nil {
		return err
	}
	if _, err := idmappedMounts(spec); err != nil {
		return err
	}
	if ns.unshare&unix.CLONE_NEWNS == 0 {
		return invalid("linux.namespaces: the container needs a new mount namespace")
	}
	if spec.Hostname != "" && ns.unshare&unix.CLONE_NEWUTS == 0 {
		return invalid("hostname %q is set but the container has no UTS namespace of its own", spec.Hostname)
	}
	if p := spec.Linux.CgroupsPath; p != "" {
		if _, err := placeCgroup(p, "", false); err != nil {
			return err
		}
	}
	return nil
}

// RootfsPath is the container's root as an absolute host path.
func RootfsPath(spec *specs.Spec, bundle string) string {
	if filepath.IsAbs(spec.Root.Path) {
		return filepath.Clean(spec.Root.Path)
	}
	return filepath.Join(bundle, spec.Root.Path)
}

// namespaces is what the C preamble must do: the clone flags to unshare,
// the namespace files to join, and what a new user or time namespace is
// set up with.
type namespaces struct {
	unshare uintptr
	join    []nsJoin
	// uidMap and gidMap map a new user namespace's ids; the parent writes
	// them when the preamble asks.
	uidMap, gidMap []specs.LinuxIDMapping
	// timeOffsets are a new time namespace's clock offsets.
	timeOffsets map[string]specs.LinuxTimeOffset
}

// nsJoin is a namespace file to join and the type it must be.
type nsJoin struct {
	flag uintptr
	path string
}

var namespaceFlags = map[specs.LinuxNamespaceType]uintptr{
	specs.PIDNamespace:     unix.CLONE_NEWPID,
	specs.NetworkNamespace: unix.CLONE_NEWNET,
	specs.MountNamespace:   unix.CLONE_NEWNS,
	specs.IPCNamespace:     unix.CLONE_NEWIPC,
	specs.UTSNamespace:     unix.CLONE_NEWUTS,
	specs.UserNamespace:    unix.CLONE_NEWUSER,
	specs.CgroupNamespace:  unix.CLONE_NEWCGROUP,
	specs.TimeNamespace:    unix.CLONE_NEWTIME,
}

func namespacesOf(spec *specs.Spec) (namespaces, error) {
	var ns namespaces
	seen := map[specs.LinuxNamespaceType]bool{}
	for _, n := range spec.Linux.Namespaces {
		flag, ok := namespaceFlags[n.Type]
		if !ok {
			return ns, fmt.Errorf("config.json: linux.namespaces: unknown namespace type %q: %w", n.Type, errdefs.ErrInvalidArgument)
		}
		if seen[n.Type] {
			return ns, fmt.Errorf("config.json: linux.namespaces: %q is listed twice: %w", n.Type, errdefs.ErrInvalidArgument)
		}
		seen[n.Type] = true
		if n.Path == "" {
			ns.unshare |= flag
			continue
		}
		if strings.ContainsRune(n.Path, '\n') || !filepath.IsAbs(n.Path) {
			return ns, fmt.Errorf("config.json: linux.namespaces: %s path %q is not an absolute path: %w", n.Type, n.Path, errdefs.ErrInvalidArgument)
		}
		ns.join = append(ns.join, nsJoin{flag: flag, path: n.Path})
	}
	if err := checkUserNamespace(spec.Linux, seen[specs.UserNamespace], ns.unshare&unix.CLONE_NEWUSER != 0); err != nil {
		return ns, err
	}
	if err := checkTimeOffsets(spec.Linux.TimeOffsets, seen[specs.TimeNamespace], ns.unshare&unix.CLONE_NEWTIME != 0); err != nil {
		return ns, err
	}
	if ns.unshare&unix.CLONE_NEWUSER != 0 {
		ns.uidMap, ns.gidMap = spec.Linux.UIDMappings, spec.Linux.GIDMappings
	}
	if ns.unshare&unix.CLONE_NEWTIME != 0 {
		ns.timeOffsets = spec.Linux.TimeOffsets
	}
	return ns, nil
}

// bootstrap is the frame the C preamble reads.
func (ns namespaces) bootstrap() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "unshare %d\n", ns.unshare)
	for _, j := range ns.join {
		fmt.Fprintf(&b, "join %d %s\n", j.flag, j.path)
	}
	for _, clock := range slices.Sorted(maps.Keys(ns.timeOffsets)) {
		o := ns.timeOffsets[clock]
		fmt.Fprintf(&b, "timens %s %d %d\n", clock, o.Secs, o.Nanosecs)
	}
	return []byte(b.String())
}

// ShimGroupAnnotation chooses a container's shim grouping (a value of
// runtimeopts.ShimGroupModes) over the runtime options' ShimGroup.
const ShimGroupAnnotation = "io.containerd.mini.v2.shim-group"

// The names of the namespace's and the node's shared shims. They hold a
// colon, which no container id does, so they never meet a pod's.
const (
	NamespaceGroupName = "mini:namespace"
	NodeGroupName      = "mini:node"
)

// Group names the shim a container belongs to.
type Group struct {
	// Name keys the shim's socket.
	Name string
	// AllNamespaces: one shim serves every containerd namespace (the node
	// grouping), so its socket is named without the namespace.
	AllNamespaces bool
}

// ShimGroup is the shim a container's socket is named by, from its
// annotations in bundle/config.json and the grouping mode of the runtime
// options: by pod (the default), the runc-v2 group annotation, else the
// CRI sandbox id, else the container's own id; by namespace or by node, one
// name for all.
func ShimGroup(bundle, id, mode string) (Group, error) {
	path := filepath.Join(bundle, "config.json")
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return Group{}, fmt.Errorf("read %s: %w", path, err)
	default:
		if err := json.Unmarshal(b, &spec); err != nil {
			return Group{}, fmt.Errorf("parse %s: %w", path, err)
		}
	}
	if m, ok := spec.Annotations[ShimGroupAnnotation]; ok {
		if err := runtimeopts.CheckShimGroup(path+": annotation "+ShimGroupAnnotation, m); err != nil {
			return Group{}, err
		}
		mode = m
	}
	switch mode {
	case "namespace":
		return Group{Name: NamespaceGroupName}, nil
	case "node":
		return Group{Name: NodeGroupName, AllNamespaces: true}, nil
	}
	// The keys containerd's runc shim honours, in its order of
	// preference, so a pod keeps one shim whichever runtime serves it.
	for _, key := range []string{"io.containerd.runc.v2.group", "io.kubernetes.cri.sandbox-id"} {
		if g := spec.Annotations[key]; g != "" {
			return Group{Name: g}, nil
		}
	}
	return Group{Name: id}, nil
}
