package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Version describes one containerd release the harness knows how to start.
type Version struct {
	// Name is the short name used in env lists and test names: "1.6", "2.4".
	Name string
	// BinDir holds containerd, ctr and the matching runc shim; it goes first
	// on containerd's PATH so each daemon gets its own runc shim (Debian's
	// 1.6 shim cannot read the bootstrap params 2.4 writes to its stdin).
	BinDir string
	// VersionMark is what `containerd --version` must print.
	VersionMark string
	// ConfigVersion is the config.toml schema version to write.
	ConfigVersion int
	// DisabledPlugins are plugin ids that only slow startup down here (CRI).
	DisabledPlugins []string
	// CRIPlugins are the ids among DisabledPlugins that Options.CRI
	// enables again; empty where the harness does not configure the CRI.
	CRIPlugins []string
}

// Containerd is the path of the daemon binary.
func (v Version) Containerd() string { return filepath.Join(v.BinDir, "containerd") }

// CtrPath is the path of the ctr client that matches the daemon.
func (v Version) CtrPath() string { return filepath.Join(v.BinDir, "ctr") }

// Tag is Name without dots, for container ids and cgroup names.
func (v Version) Tag() string { return strings.ReplaceAll(v.Name, ".", "") }

var knownVersions = []Version{
	{
		Name:            "1.6",
		BinDir:          "/usr/bin",
		VersionMark:     " 1.6.",
		ConfigVersion:   2,
		DisabledPlugins: []string{"io.containerd.grpc.v1.cri"},
	},
	{
		Name:          "2.4",
		BinDir:        "/opt/containerd-2.4.2/bin",
		VersionMark:   " 2.4.2",
		ConfigVersion: 3,
		// In 2.x the CRI is several plugins; the grpc one needs the other two.
		DisabledPlugins: []string{
			"io.containerd.grpc.v1.cri",
			"io.containerd.cri.v1.images",
			"io.containerd.cri.v1.runtime",
			"io.containerd.podsandbox.controller.v1.podsandbox",
			"io.containerd.nri.v1.nri",
		},
		// NRI stays off: the CRI runs without it.
		CRIPlugins: []string{
			"io.containerd.grpc.v1.cri",
			"io.containerd.cri.v1.images",
			"io.containerd.cri.v1.runtime",
			"io.containerd.podsandbox.controller.v1.podsandbox",
		},
	},
}

// LookupVersion returns the known containerd release named name ("1.6", "2.4").
func LookupVersion(name string) (Version, error) {
	for _, v := range knownVersions {
		if v.Name == name {
			return v, nil
		}
	}
	return Version{}, fmt.Errorf("containerd version %q: unknown (known: 1.6, 2.4)", name)
}

// Check reports why this version cannot be started here, or nil.
func (v Version) Check() error {
	for _, p := range []string{v.Containerd(), v.CtrPath()} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("containerd %s: %w (run hack/install-deps.sh)", v.Name, err)
		}
	}
	return nil
}

// Emulated reports whether MINI_TEST_EMULATED=1 says the tests run on an
// emulated machine, tens of times slower, where the long cases are cut down.
func Emulated() bool { return os.Getenv("MINI_TEST_EMULATED") == "1" }

// ListFromEnv splits the comma separated list in env var name, or def when
// the variable is unset or empty.
func ListFromEnv(name, def string) []string {
	val := os.Getenv(name)
	if strings.TrimSpace(val) == "" {
		val = def
	}
	var out []string
	for _, f := range strings.Split(val, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Default runtime under test and the reference it is compared with.
const (
	MiniRuntime = "io.containerd.mini.v2"
	RuncRuntime = "io.containerd.runc.v2"
)

// ShimBinaryName maps a runtime name to the binary containerd looks up:
// io.containerd.runc.v2 → containerd-shim-runc-v2.
func ShimBinaryName(runtime string) string {
	parts := strings.Split(runtime, ".")
	if len(parts) < 2 {
		return runtime
	}
	return "containerd-shim-" + parts[len(parts)-2] + "-" + parts[len(parts)-1]
}

// ShortRuntime is a compact runtime label for ids and test names: "mini.v2".
func ShortRuntime(runtime string) string {
	return strings.TrimPrefix(runtime, "io.containerd.")
}

// RuntimeTag is the runtime's name without its version ("mini", "runc"),
// short enough for container ids.
func RuntimeTag(runtime string) string {
	s := ShortRuntime(runtime)
	if i := strings.IndexByte(s, '.'); i > 0 {
		return s[:i]
	}
	return s
}
