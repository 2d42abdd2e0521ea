package linux

import (
	"slices"
	"testing"
)

// The features document claims what Create enforces and nothing it
// refuses.
func TestFeaturesClaimOnlyWhatWorks(t *testing.T) {
	f := Features()
	if f.Linux == nil {
		t.Fatal("no linux section (containerd's idmap check dereferences it)")
	}
	for _, ns := range []string{"cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"} {
		if !slices.Contains(f.Linux.Namespaces, ns) {
			t.Errorf("%s namespaces work but are not reported", ns)
		}
	}
	for _, o := range []string{"rbind", "rshared", "ro", "nosymfollow", "tmpcopyup"} {
		if !slices.Contains(f.MountOptions, o) {
			t.Errorf("mount option %q works but is not reported", o)
		}
	}
	if mountSetattrWorks() != slices.Contains(f.MountOptions, "rro") {
		t.Errorf("rro reported = %v, mount_setattr works = %v", slices.Contains(f.MountOptions, "rro"), mountSetattrWorks())
	}
	if idmap := f.Linux.MountExtensions.IDMap.Enabled; idmap == nil || *idmap != mountSetattrWorks() {
		t.Errorf("idmap reported %v, mount_setattr works = %v", idmap, mountSetattrWorks())
	}
	for name, ext := range map[string]*bool{"netDevices": f.Linux.NetDevices.Enabled, "intelRdt": f.Linux.IntelRdt.Enabled} {
		if ext == nil || *ext {
			t.Errorf("%s is refused at Create but not reported disabled", name)
		}
	}
}
