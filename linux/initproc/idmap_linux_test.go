package initproc

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// testUserns makes user namespaces the way os/exec does, for the rootfs
// code under test (the runtime's own comes from its preamble).
func testUserns(t *testing.T) UsernsFunc {
	return func(uid, gid []specs.LinuxIDMapping) (int, error) {
		toSys := func(r []specs.LinuxIDMapping) []syscall.SysProcIDMap {
			var out []syscall.SysProcIDMap
			for _, m := range r {
				out = append(out, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
			}
			return out
		}
		cmd := exec.Command("/bin/sleep", "100")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWUSER, UidMappings: toSys(uid), GidMappings: toSys(gid)}
		if err := cmd.Start(); err != nil {
			return -1, err
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		return unix.Open("/proc/"+strconv.Itoa(cmd.Process.Pid)+"/ns/user", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
}

// containerd's uidmap=/gidmap= rootfs options: a bind and an overlay show
// root's files as the mapped root's, and the options never reach the
// kernel as data.
func TestMountRootfsIDMapped(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	lower := filepath.Join(base, "lower")
	if err := os.MkdirAll(lower, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(lower, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	idmap := []string{"uidmap=0:100000:65536", "gidmap=0:200000:65536"}
	for _, tt := range []struct {
		name string
		m    func(upper, work string) Mount
	}{
		{"bind", func(_, _ string) Mount {
			return Mount{Type: "bind", Source: lower, Options: append([]string{"rbind", "ro"}, idmap...)}
		}},
		{"overlay", func(upper, work string) Mount {
			return Mount{Type: "overlay", Source: "overlay", Options: append([]string{"lowerdir=" + lower, "upperdir=" + upper, "workdir=" + work}, idmap...)}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			target, upper, work := filepath.Join(dir, "rootfs"), filepath.Join(dir, "upper"), filepath.Join(dir, "work")
			for _, d := range []string{target, upper, work} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := MountRootfs([]Mount{tt.m(upper, work)}, target, testUserns(t)); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = UnmountRootfs(target) })
			fi, err := os.Stat(filepath.Join(target, "f"))
			if err != nil {
				t.Fatal(err)
			}
			if st := fi.Sys().(*syscall.Stat_t); st.Uid != 100000 || st.Gid != 200000 {
				t.Errorf("root's file shows as %d:%d, want 100000:200000", st.Uid, st.Gid)
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), ".idmapped-layers-") {
					t.Errorf("the layers' temporary mounts are left: %s", e.Name())
				}
			}
		})
	}
}

func TestMountIDMappedTmpfsRefused(t *testing.T) {
	err := MountRootfs([]Mount{{Type: "tmpfs", Source: "tmpfs", Options: []string{"uidmap=0:1:2", "gidmap=0:1:2"}}}, t.TempDir(), testUserns(t))
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "only bind and overlay") {
		t.Errorf("idmapped tmpfs: %v", err)
	}
}
