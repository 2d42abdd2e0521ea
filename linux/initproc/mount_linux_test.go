package initproc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// runLinuxTestChild re-executes the test binary to run only the named test,
// with env added; the helper test recognises its role by that env.
func runLinuxTestChild(t *testing.T, test string, env []string, attr *syscall.SysProcAttr) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = attr
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// mountPointsBelow lists mount points at or below dir in this namespace.
func mountPointsBelow(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := ReadMountinfo("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.MountPoint == dir || strings.HasPrefix(e.MountPoint, dir+"/") {
			out = append(out, e.MountPoint+" "+e.FSType)
		}
	}
	return out
}

func TestMountParseOptions(t *testing.T) {
	for _, tc := range []struct {
		in    []string
		flags uintptr
		prop  []uintptr
		data  string
	}{
		{nil, 0, nil, ""},
		{[]string{"ro", "nosuid", "nodev", "noexec"}, unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, nil, ""},
		{[]string{"ro", "rw"}, 0, nil, ""},
		{[]string{"rbind", "rprivate"}, unix.MS_BIND | unix.MS_REC, []uintptr{unix.MS_PRIVATE | unix.MS_REC}, ""},
		{[]string{"bind", "slave", "shared"}, unix.MS_BIND, []uintptr{unix.MS_SLAVE, unix.MS_SHARED}, ""},
		{[]string{"rslave", "rshared", "unbindable", "runbindable", "private"}, 0,
			[]uintptr{unix.MS_SLAVE | unix.MS_REC, unix.MS_SHARED | unix.MS_REC, unix.MS_UNBINDABLE, unix.MS_UNBINDABLE | unix.MS_REC, unix.MS_PRIVATE}, ""},
		{[]string{"nosuid", "strictatime", "mode=755", "size=65536k"}, unix.MS_NOSUID | unix.MS_STRICTATIME, nil, "mode=755,size=65536k"},
		{[]string{"relatime", "noatime", "nodiratime", "sync", "dirsync", "remount", "mand"},
			unix.MS_RELATIME | unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_SYNCHRONOUS | unix.MS_DIRSYNC | unix.MS_REMOUNT | unix.MS_MANDLOCK, nil, ""},
		{[]string{"newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}, 0, nil, "newinstance,ptmxmode=0666,mode=0620,gid=5"},
		{[]string{"lowerdir=/a:/b", "upperdir=/u", "workdir=/w", "index=off"}, 0, nil, "lowerdir=/a:/b,upperdir=/u,workdir=/w,index=off"},
		{[]string{"nosuid", "suid", "defaults"}, 0, nil, ""},
	} {
		flags, prop, data := ParseMountOptions(tc.in)
		if flags != tc.flags || !reflect.DeepEqual(prop, tc.prop) || data != tc.data {
			t.Errorf("ParseMountOptions(%q) = %#x, %v, %q; want %#x, %v, %q", tc.in, flags, prop, data, tc.flags, tc.prop, tc.data)
		}
	}
}

func TestMountUnescapeMountinfo(t *testing.T) {
	if got := unescapeMountinfo(`/a\040b\011c\\d\134`); got != "/a b\tc\\\\d\\" {
		t.Fatalf("unescape = %q", got)
	}
}

func TestMountRootfsComponents(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	mk := func(p string) string {
		p = filepath.Join(base, p)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	lower1, lower2, upper, work := mk("l1"), mk("l2"), mk("upper"), mk("work")
	mk("l1/mnt")
	if err := os.WriteFile(filepath.Join(lower2, "from-l2"), []byte("l2"), 0o644); err != nil {
		t.Fatal(err)
	}
	vol := mk("vol")
	if err := os.WriteFile(filepath.Join(vol, "hello"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	target := mk("rootfs")
	t.Cleanup(func() { _ = UnmountRootfs(target) })

	mounts := []Mount{
		{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=" + lower1 + ":" + lower2, "upperdir=" + upper, "workdir=" + work}},
		{Type: "tmpfs", Source: "tmpfs", Target: "/mnt", Options: []string{"nosuid", "size=1m"}},
		{Type: "bind", Source: vol, Target: "/mnt", Options: []string{"rbind", "ro"}},
	}
	if err := MountRootfs(mounts, target, nil); err != nil {
		t.Fatal(err)
	}
	got := mountPointsBelow(t, target)
	want := []string{target + " overlay", target + "/mnt tmpfs", target + "/mnt ext4"}
	if len(got) != 3 || got[0] != want[0] || got[1] != want[1] || !strings.HasPrefix(got[2], target+"/mnt ") {
		t.Fatalf("mounts = %q; want like %q", got, want)
	}
	if b, err := os.ReadFile(filepath.Join(target, "from-l2")); err != nil || string(b) != "l2" {
		t.Fatalf("overlay content: %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(target, "mnt/hello")); err != nil || string(b) != "hi" {
		t.Fatalf("bind content: %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(target, "mnt/new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Fatalf("write to ro bind: %v; want EROFS", err)
	}
	if err := UnmountRootfs(target); err != nil {
		t.Fatal(err)
	}
	if got := mountPointsBelow(t, target); len(got) != 0 {
		t.Fatalf("left mounted: %q", got)
	}
	if err := UnmountRootfs(target); err != nil {
		t.Fatalf("second UnmountRootfs: %v", err)
	}
	if err := UnmountRootfs(filepath.Join(base, "does-not-exist")); err != nil {
		t.Fatalf("UnmountRootfs(missing): %v", err)
	}
}

func TestMountRootfsLongOverlay(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	var lowers []string
	for i := 0; len(strings.Join(lowers, ":")) < 2*os.Getpagesize(); i++ {
		d := filepath.Join(base, fmt.Sprintf("layer-%03d-%s", i, strings.Repeat("x", 60)))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%03d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		lowers = append(lowers, d)
	}
	target := filepath.Join(base, "rootfs")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = UnmountRootfs(target) })
	if err := MountRootfs([]Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=" + strings.Join(lowers, ":")}}}, target, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(target, fmt.Sprintf("f%03d", len(lowers)-1))); err != nil {
		t.Fatalf("last layer not visible: %v", err)
	}
	if err := UnmountRootfs(target); err != nil {
		t.Fatal(err)
	}
}

func TestMountRootfsErrors(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	target := filepath.Join(base, "rootfs")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = UnmountRootfs(target) })

	err := MountRootfs([]Mount{
		{Type: "tmpfs", Source: "tmpfs"},
		{Type: "bind", Source: "/nonexistent-src", Options: []string{"rbind"}},
	}, target, nil)
	want := fmt.Sprintf("mount rootfs /nonexistent-src (type bind) on %s: stat /nonexistent-src: no such file or directory", target)
	if err == nil || err.Error() != want || !errdefs.IsInvalidArgument(err) {
		t.Fatalf("err = %v (invalid argument: %v); want %q", err, errdefs.IsInvalidArgument(err), want)
	}
	if got := mountPointsBelow(t, target); len(got) != 0 {
		t.Fatalf("left mounted after failure: %q", got)
	}

	err = MountRootfs([]Mount{{Type: "tmpfs", Source: "tmpfs"}}, filepath.Join(base, "missing"), nil)
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), filepath.Join(base, "missing")) {
		t.Fatalf("missing target: %v; want not found naming it", err)
	}

	err = MountRootfs([]Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/nonexistent-lower"}}}, target, nil)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "(type overlay)") {
		t.Fatalf("missing lowerdir: %v; want invalid argument", err)
	}
}

// Every option MountOptionNames reports is one the mount code takes.
func TestMountOptionNamesKnown(t *testing.T) {
	for _, o := range MountOptionNames(true) {
		_, _, flag := mountFlag(o)
		_, prop := propagationFlag(o)
		_, _, rec := recursiveAttr(o)
		if !flag && !prop && !rec && o != "tmpcopyup" && o != "idmap" && o != "ridmap" {
			t.Errorf("mount option %q is reported but not known to the mount code", o)
		}
	}
}

func TestMountIDMapOptionsBad(t *testing.T) {
	for _, tt := range []struct {
		opts []string
		want string
	}{
		{[]string{"uidmap=0:1:2"}, "come together"},
		{[]string{"uidmap=0:1", "gidmap=0:1:2"}, "is not containerID:hostID:size"},
		{[]string{"uidmap=0:100:10,5:200:10", "gidmap=0:1:2"}, "overlap"},
	} {
		_, _, _, err := takeIDMapOptions(tt.opts)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("takeIDMapOptions(%q) = %v; want InvalidArgument with %q", tt.opts, err, tt.want)
		}
	}
}
