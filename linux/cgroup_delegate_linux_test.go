package linux

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

func TestDelegatableFiles(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "delegate")
	if err := os.WriteFile(list, []byte("cgroup.procs\ncgroup.threads\n\n../escape\nsub/file\nmemory.reclaim\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, list string
		want       []string
	}{
		{"the kernel's list, names only", list, []string{"cgroup.procs", "cgroup.threads", "memory.reclaim"}},
		{"no list: cgroups(7)'s three", filepath.Join(dir, "missing"), []string{"cgroup.procs", "cgroup.subtree_control", "cgroup.threads"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := delegatableFiles(tc.list)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDelegateCgroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	dir := t.TempDir()
	cg := filepath.Join(dir, "cg")
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"cgroup.procs", "cgroup.threads", "memory.max"} {
		if err := os.WriteFile(filepath.Join(cg, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	list := filepath.Join(dir, "delegate")
	// cgroup.subtree_control is listed but missing here: skipped.
	if err := os.WriteFile(list, []byte("cgroup.procs\ncgroup.subtree_control\ncgroup.threads\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const uid = 123456
	if err := delegateCgroup(cg, uid, list); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]uint32{"": uid, "cgroup.procs": uid, "cgroup.threads": uid, "memory.max": 0} {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(cg, name), &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != want || st.Gid != 0 {
			t.Errorf("%s/%s is %d:%d, want %d:0", cg, name, st.Uid, st.Gid, want)
		}
	}
}

func TestCgroupDelegateOwner(t *testing.T) {
	// This process's user namespace is the host's: the identity map.
	got, err := cgroupDelegateOwner(os.Getpid(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if got != 1000 {
		t.Errorf("owner %d, want 1000", got)
	}
	if _, err := cgroupDelegateOwner(1<<30, 0); err == nil {
		t.Error("no error for a pid that does not exist")
	}
}
