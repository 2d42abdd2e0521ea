package linux

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestEmptyNamespaceFlags(t *testing.T) {
	cases := []struct {
		names   []string
		want    uint32
		wantErr bool
	}{
		{nil, unix.CLONE_NEWNET, false},
		{[]string{"network"}, unix.CLONE_NEWNET, false},
		{[]string{"ipc"}, 0, true},
	}
	for _, tc := range cases {
		got, err := emptyNamespaceFlags(tc.names)
		if (err != nil) != tc.wantErr || (err == nil && got != tc.want) {
			t.Errorf("emptyNamespaceFlags(%q) = %#x, %v; want %#x, error %v", tc.names, got, err, tc.want, tc.wantErr)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("emptyNamespaceFlags(%q): error class: %v", tc.names, err)
		}
	}
}

func TestCgroupsMode(t *testing.T) {
	cases := []struct {
		mode    string
		want    *rpc.CriuCgMode
		wantErr bool
	}{
		{"", nil, false},
		{"soft", rpc.CriuCgMode_SOFT.Enum(), false},
		{"full", rpc.CriuCgMode_FULL.Enum(), false},
		{"strict", rpc.CriuCgMode_STRICT.Enum(), false},
		{"ignore", rpc.CriuCgMode_IGNORE.Enum(), false},
		{"props", nil, true},
	}
	for _, tc := range cases {
		got, err := cgroupsMode(tc.mode)
		if (err != nil) != tc.wantErr {
			t.Errorf("cgroupsMode(%q): error %v, want error %v", tc.mode, err, tc.wantErr)
			continue
		}
		if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
			t.Errorf("cgroupsMode(%q) = %v, want %v", tc.mode, got, tc.want)
		}
	}
}

func TestRestoreMountpointsAndBinds(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	spec := &specs.Spec{Mounts: []specs.Mount{
		{Destination: "/proc", Type: "proc"},
		{Destination: "/dev", Type: "tmpfs"},
		{Destination: "/dev/pts", Type: "devpts"},
		{Destination: "/sys/fs/cgroup", Type: "cgroup"},
		{Destination: "/data/", Type: "bind", Source: dir},
		{Destination: "/etc/hosts", Type: "none", Source: file, Options: []string{"rbind", "ro"}},
	}}
	dirs, files := restoreMountpoints(spec)
	if want := []string{"/proc", "/dev", "/data"}; !slices.Equal(dirs, want) {
		t.Errorf("dirs %q, want %q (nothing under a tmpfs, no cgroup)", dirs, want)
	}
	if want := []string{"/etc/hosts"}; !slices.Equal(files, want) {
		t.Errorf("files %q, want %q", files, want)
	}
	binds := externalBindMounts(spec)
	if len(binds) != 2 || binds["/data"] != dir || binds["/etc/hosts"] != file {
		t.Errorf("external binds %v", binds)
	}
}

func TestCheckpointRecord(t *testing.T) {
	dir := t.TempDir()
	if _, err := readCheckpointRecord(dir); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("no record: %v, want InvalidArgument", err)
	}
	want := checkpointRecord{Descriptors: [3]string{"/dev/null", "pipe:[12]", "pipe:[13]"}, FileLocks: true, EmptyNs: unix.CLONE_NEWNET}
	if err := writeCheckpointRecord(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := readCheckpointRecord(dir)
	if err != nil || got != want {
		t.Errorf("read back %+v, %v; want %+v", got, err, want)
	}
}

func TestRemoveCriuRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	bundle := t.TempDir()
	rootfs := filepath.Join(bundle, "rootfs")
	dir := filepath.Join(bundle, criuRootDir)
	for _, d := range []string{rootfs, dir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount(rootfs, dir, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	if err := removeCriuRoot(bundle); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still there after removeCriuRoot: %v", dir, err)
	}
	// Nothing to do the second time, nor in a bundle that never restored.
	if err := removeCriuRoot(bundle); err != nil {
		t.Errorf("second call: %v", err)
	}
}
