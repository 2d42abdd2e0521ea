package initproc

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const rootfsChildEnv = "MINISHIM_TEST_ROOTFS_CHILD"

// rootfsCheckScript runs as the container's pid 1 after setupRootfs and
// prints KEY=value lines the parent test asserts on.
const rootfsCheckScript = `
echo "PID=$$"
echo x > /dev/null && echo DEVNULL=ok
echo "URANDOM=$(head -c 8 /dev/urandom | wc -c)"
echo "KEYS=$(wc -c < /proc/keys)"
echo "FIRMWARE=$(ls /sys/firmware | wc -l)"
echo "SECRET=$(cat /etc/secret)"
echo "PTMX=$(readlink /dev/ptmx)"
echo "FD=$(readlink /dev/fd)"
echo "MYDEV=$(stat -c '%a %u %t:%T' /dev/mydev)"
echo "DOMAIN=$(cat /proc/sys/kernel/domainname)"
(echo y > /proc/sys/kernel/domainname) 2>/dev/null && echo PROCSYS=rw || echo PROCSYS=ro
touch /rootprobe 2>/dev/null && echo ROOT=rw || echo ROOT=ro
echo "DATA=$(cat /data/hello)"
touch /data/probe 2>/dev/null && echo DATAW=rw || echo DATAW=ro
test -d /sys/fs/cgroup/memory && echo CGMEM=yes
touch /sys/fs/cgroup/memory/probe 2>/dev/null && echo CGW=rw || echo CGW=ro
test -d /tmp/escaped && echo ESCAPE=inside
echo MOUNTINFO
cat /proc/self/mountinfo
`

// TestRootfsChild is the container side of TestRootfsSetup, run in fresh
// namespaces by the parent; on its own it does nothing.
func TestRootfsChild(t *testing.T) {
	specFile := os.Getenv(rootfsChildEnv)
	if specFile == "" {
		t.Skip("helper for TestRootfsSetup")
	}
	fail := func(stage string, err error) {
		fmt.Printf("%s-ERROR: %v\nCLASS-INVALID=%v\n", stage, err, errdefs.IsInvalidArgument(err))
		os.Exit(3)
	}
	b, err := os.ReadFile(specFile)
	if err != nil {
		fail("READ", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		fail("READ", err)
	}
	cgroupsPath := ""
	if spec.Linux != nil {
		cgroupsPath = spec.Linux.CgroupsPath
	}
	if err := setupRootfs(ContainerSpecOf(&spec, cgroupsPath), spec.Root.Path, rootfsOptions{}); err != nil {
		fail("SETUP", err)
	}
	if err := applySysctl(spec.Linux.Sysctl); err != nil {
		fail("SYSCTL", err)
	}
	sh, err := lookPath(spec.Process.Args, spec.Process.Env)
	if err != nil {
		fail("LOOKPATH", err)
	}
	_, nopeErr := lookPath([]string{"/bin/nope"}, spec.Process.Env)
	fmt.Printf("LOOKPATH=%s\nNOPE=%v\n", sh, nopeErr)
	fail("EXEC", syscall.Exec(sh, spec.Process.Args, spec.Process.Env))
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// makeBusyboxRootfs builds a minimal root with busybox-static and a secret
// file to be masked.
func makeBusyboxRootfs(t *testing.T, root string) {
	t.Helper()
	for _, d := range []string{"bin", "etc", "tmp", "proc", "sys", "dev"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, "/bin/busybox", filepath.Join(root, "bin/busybox"), 0o755)
	for _, a := range []string{"sh", "ls", "cat", "echo", "touch", "wc", "head", "readlink", "stat", "test"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc/secret"), []byte("s3cret"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func hostMountinfo(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// rootfsTestSpec is close to ctr's default spec, plus a read-only volume, a
// device, a sysctl and a mount whose destination tries to leave the rootfs.
func rootfsTestSpec(rootfs, volume string, readonly bool, propagation string) *specs.Spec {
	common := []string{"nosuid", "noexec", "nodev"}
	mode, uid := os.FileMode(0o640), uint32(1000)
	return &specs.Spec{
		Root: &specs.Root{Path: rootfs, Readonly: readonly},
		Process: &specs.Process{
			Args: []string{"sh", "-c", rootfsCheckScript},
			Env:  []string{"PATH=/bin"},
			Cwd:  "/",
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: common},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: append(common, "mode=1777", "size=65536k")},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: common},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: append(common, "ro")},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: append(common, "relatime", "ro")},
			{Destination: "/run", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/data", Type: "bind", Source: volume, Options: []string{"rbind", "ro"}},
			{Destination: "/escape/escaped", Type: "tmpfs", Source: "tmpfs"},
		},
		Linux: &specs.Linux{
			RootfsPropagation: propagation,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.IPCNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.CgroupNamespace},
			},
			Devices: []specs.LinuxDevice{{Path: "/dev/mydev", Type: "c", Major: 1, Minor: 3, FileMode: &mode, UID: &uid}},
			Sysctl:  map[string]string{"kernel.domainname": "ctr.test"},
			MaskedPaths: []string{
				"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
				"/etc/secret", "/does/not/exist",
			},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger", "/does/not/exist"},
		},
	}
}

// runRootfsChild runs TestRootfsChild as pid 1 of new namespaces, the way
// the C preamble leaves init.
func runRootfsChild(t *testing.T, spec *specs.Spec) (string, error) {
	t.Helper()
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	specFile := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(specFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	flags := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWNET)
	if spec.Linux != nil && slices.ContainsFunc(spec.Linux.Namespaces, func(n specs.LinuxNamespace) bool {
		return n.Type == specs.CgroupNamespace
	}) {
		flags |= unix.CLONE_NEWCGROUP
	}
	return runLinuxTestChild(t, "TestRootfsChild", []string{rootfsChildEnv + "=" + specFile}, &syscall.SysProcAttr{Cloneflags: flags})
}

// sharedTestDir is a temp dir made a shared mount on the host, so that any
// mount the child failed to keep to itself would show up here.
func sharedTestDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := UnmountRootfs(dir); err != nil {
			t.Error(err)
		}
	})
	if err := unix.Mount("", dir, "", unix.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}
	return dir
}

func parseKV(out string) map[string]string {
	kv := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if line == "MOUNTINFO" {
			break
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			kv[k] = v
		}
	}
	return kv
}

// containerMounts maps mount point → "fstype opts" from the child's mountinfo.
func containerMounts(out string) map[string]string {
	m := map[string]string{}
	_, info, _ := strings.Cut(out, "MOUNTINFO\n")
	for _, line := range strings.Split(info, "\n") {
		f := strings.Fields(line)
		i := slices.Index(f, "-")
		if i < 0 || len(f) < i+2 {
			continue
		}
		m[f[4]] = f[i+1] + " " + f[5]
	}
	return m
}

// mountRoots maps mount point → the root of the mount within its filesystem.
func mountRoots(out string) map[string]string {
	m := map[string]string{}
	_, info, _ := strings.Cut(out, "MOUNTINFO\n")
	for _, line := range strings.Split(info, "\n") {
		if f := strings.Fields(line); len(f) > 4 {
			m[f[4]] = f[3]
		}
	}
	return m
}

func TestRootfsSetup(t *testing.T) {
	requireRoot(t)
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs /bin/busybox")
	}
	for _, tc := range []struct {
		name        string
		readonly    bool
		propagation string
		cgroupNS    bool
	}{
		{"readonly-default-propagation", true, "", true},
		{"readwrite-rshared", false, "rshared", true},
		{"no-cgroupns", false, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := sharedTestDir(t)
			rootfs, volume, outside := filepath.Join(dir, "rootfs"), filepath.Join(dir, "vol"), filepath.Join(dir, "outside")
			makeBusyboxRootfs(t, rootfs)
			for _, d := range []string{volume, outside} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(volume, "hello"), []byte("hi"), 0o644); err != nil {
				t.Fatal(err)
			}
			// An absolute symlink climbing towards the host's "outside"; it
			// must resolve inside the rootfs (to /tmp).
			if err := os.Symlink("/../../../../../../../../tmp", filepath.Join(rootfs, "escape")); err != nil {
				t.Fatal(err)
			}
			before := hostMountinfo(t)

			spec := rootfsTestSpec(rootfs, volume, tc.readonly, tc.propagation)
			if !tc.cgroupNS {
				spec.Linux.Namespaces = slices.DeleteFunc(spec.Linux.Namespaces, func(n specs.LinuxNamespace) bool {
					return n.Type == specs.CgroupNamespace
				})
			}
			out, err := runRootfsChild(t, spec)
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			if after := hostMountinfo(t); !slices.Equal(before, after) {
				t.Errorf("host mounts changed:\nbefore %q\nafter  %q", before, after)
			}
			kv := parseKV(out)
			rootWant := "rw"
			if tc.readonly {
				rootWant = "ro"
			}
			for k, want := range map[string]string{
				"LOOKPATH": "/bin/sh",
				"NOPE":     `exec: "/bin/nope": stat /bin/nope: no such file or directory`,
				"PID":      "1",
				"DEVNULL":  "ok",
				"URANDOM":  "8",
				"KEYS":     "0",
				"FIRMWARE": "0",
				"SECRET":   "",
				"PTMX":     "pts/ptmx",
				"FD":       "/proc/self/fd",
				"MYDEV":    "640 1000 1:3",
				"DOMAIN":   "ctr.test",
				"PROCSYS":  "ro",
				"ROOT":     rootWant,
				"DATA":     "hi",
				"DATAW":    "ro",
				"CGMEM":    "yes",
				"CGW":      "ro",
				"ESCAPE":   "inside",
			} {
				if got, ok := kv[k]; !ok || got != want {
					t.Errorf("%s = %q (present %v); want %q", k, got, ok, want)
				}
			}
			mounts := containerMounts(out)
			for mp, want := range map[string]string{
				"/proc": "proc", "/dev": "tmpfs", "/dev/pts": "devpts", "/dev/shm": "tmpfs",
				"/dev/mqueue": "mqueue", "/sys": "sysfs", "/sys/fs/cgroup": "tmpfs",
				"/sys/fs/cgroup/memory": "cgroup", "/run": "tmpfs", "/tmp/escaped": "tmpfs",
			} {
				if got := mounts[mp]; !strings.HasPrefix(got, want+" ") {
					t.Errorf("mount %s = %q; want type %s", mp, got, want)
				}
			}
			// Without a cgroup namespace the container must see only its own
			// cgroup: the host's directory of it is bound in.
			ownMemory := ""
			if own, err := OwnCgroups(); err == nil {
				for _, h := range own {
					if h.Controllers == "memory" {
						ownMemory = h.Path
					}
				}
			}
			if wantRoot := map[bool]string{true: "/", false: ownMemory}[tc.cgroupNS]; mountRoots(out)["/sys/fs/cgroup/memory"] != wantRoot {
				t.Errorf("/sys/fs/cgroup/memory shows %q of its hierarchy; want %q", mountRoots(out)["/sys/fs/cgroup/memory"], wantRoot)
			}
			if got := mounts["/"]; !strings.Contains(got, rootWant+",") {
				t.Errorf("root mount = %q; want %s", got, rootWant)
			}
			if entries, _ := os.ReadDir(outside); len(entries) != 0 {
				t.Errorf("%s got entries from the container", outside)
			}
			if t.Failed() {
				t.Logf("child output:\n%s", out)
			}
		})
	}
}

func TestRootfsMissingBindSource(t *testing.T) {
	requireRoot(t)
	dir := sharedTestDir(t)
	rootfs := filepath.Join(dir, "rootfs")
	makeBusyboxRootfs(t, rootfs)
	spec := &specs.Spec{
		Root:    &specs.Root{Path: rootfs},
		Process: &specs.Process{Args: []string{"true"}},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/x", Type: "bind", Source: "/nonexistent", Options: []string{"rbind"}},
		},
	}
	before := hostMountinfo(t)
	out, err := runRootfsChild(t, spec)
	if err == nil {
		t.Fatalf("child succeeded:\n%s", out)
	}
	kv := parseKV(out)
	want := `mount "/nonexistent" on "/x" in container: stat /nonexistent: no such file or directory`
	if !strings.Contains(out, "SETUP-ERROR: "+want+"\n") || kv["CLASS-INVALID"] != "true" {
		t.Fatalf("child output:\n%s\nwant SETUP-ERROR: %s (invalid argument)", out, want)
	}
	if after := hostMountinfo(t); !slices.Equal(before, after) {
		t.Errorf("host mounts changed:\nbefore %q\nafter  %q", before, after)
	}
}

func TestRootfsResolveInRoot(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"a/b", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"abs":      "/etc",
		"up":       "../../../../etc",
		"a/rel":    "b",
		"a/b/back": "../../abs",
		"loop":     "loop",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"/", "/"},
		{"/a/b", "/a/b"},
		{"../../..", "/"},
		{"/abs/passwd", "/etc/passwd"},
		{"/up/x", "/etc/x"},
		{"/a/rel/c", "/a/b/c"},
		{"/a/b/back/y", "/etc/y"},
		{"/missing/../etc", "/etc"},
		{"a/./b/../b", "/a/b"},
	} {
		got, err := resolveInRoot(root, tc.in)
		if err != nil || got != filepath.Join(root, tc.want) {
			t.Errorf("resolveInRoot(%q) = %q, %v; want %q", tc.in, got, err, filepath.Join(root, tc.want))
		}
	}
	if _, err := resolveInRoot(root, "/loop/x"); err == nil {
		t.Errorf("resolveInRoot through a symlink loop succeeded")
	}
}
