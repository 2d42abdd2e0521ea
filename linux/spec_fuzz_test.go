package linux

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// classed says whether err carries one of the classes a Create error may
// have, so that containerd maps it to a code and not to Unknown.
func classed(err error) bool {
	return errdefs.IsInvalidArgument(err) || errdefs.IsNotFound(err) || errdefs.IsNotImplemented(err) ||
		errdefs.IsFailedPrecondition(err) || errdefs.IsPermissionDenied(err)
}

// FuzzLoadSpec: whatever config.json holds, LoadSpec neither panics nor
// fails without saying which class of failure it is.
func FuzzLoadSpec(f *testing.F) {
	f.Add([]byte(`{"ociVersion":"1.0.2","process":{"args":["/bin/true"],"cwd":"/"},"root":{"path":"rootfs"},"linux":{"namespaces":[{"type":"mount"}]}}`))
	f.Add([]byte(`{"process":{"args":["x"],"cwd":"/","scheduler":{"policy":"SCHED_FIFO","priority":5}},"root":{"path":"r"},"linux":{"namespaces":[{"type":"mount"},{"type":"pid","path":"/proc/1/ns/pid"}],"personality":{"domain":"LINUX32"},"memoryPolicy":{"mode":"MPOL_BIND","nodes":"0-3"}},"hooks":{"prestart":[{"path":"/x","timeout":-1}]}}`))
	f.Add([]byte(`{"process":{"args":["x"],"cwd":"/"},"root":{"path":"r"},"linux":{"namespaces":[{"type":"mount"}],"cgroupsPath":"a:b:c","resources":{"memory":{"limit":-5}}}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadSpec(dir); err != nil && !classed(err) {
			t.Fatalf("LoadSpec error without a class: %v", err)
		}
	})
}

// FuzzCgroupPath: cgroupsPath of either driver never panics placement,
// and a path that places never climbs out of the hierarchy.
func FuzzCgroupPath(f *testing.F) {
	f.Add("/minitest/c1", "c1", false)
	f.Add("system.slice:prefix:name", "c1", false)
	f.Add("../../etc", "c1", false)
	f.Add("a-b.slice:p:n", "", true)
	f.Fuzz(func(t *testing.T, path, id string, systemd bool) {
		place, err := placeCgroup(path, id, systemd)
		if err != nil {
			if !classed(err) {
				t.Fatalf("placeCgroup(%q) error without a class: %v", path, err)
			}
			return
		}
		if p := place.Path; p != "" && (p[0] != '/' || filepath.Clean(p) != p || containsDotDot(p)) {
			t.Fatalf("placeCgroup(%q, %q, %v) placed at %q", path, id, systemd, p)
		}
	})
}

func containsDotDot(p string) bool { return strings.Contains(p+"/", "/../") }
