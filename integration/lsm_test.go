package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// appArmorEnabled says whether the host's kernel runs AppArmor.
func appArmorEnabled() bool {
	b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	return err == nil && strings.HasPrefix(string(b), "Y")
}

// Issue 8, AppArmor and SELinux labels. Where AppArmor is off (this host),
// a profile fails create, as with runc; where it is on (the cgroup v2
// guest), a profile that denies writes under /tmp holds for init and exec.
// SELinux is off on every machine here: a process label fails create, as
// with runc.
func TestLSMLabels(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		t.Run("apparmor", func(t *testing.T) {
			tc := newCase(t, tg, "apparmor")
			if !appArmorEnabled() {
				args := tc.specArgs([]string{"--rm"}, func(s *specs.Spec) { s.Process.ApparmorProfile = "minitest-nowrite" }, "/bin/true")
				tc.ctrFails(args, "apparmor")
				return
			}
			// A name of the case's own: the cases of both daemons run at once.
			profile := "minitest-nowrite-" + tc.id
			loadAppArmorProfile(t, profile, "deny /tmp/** w,")
			pid := tc.startDetachedArgs(tc.specArgs([]string{"--detach"}, func(s *specs.Spec) {
				s.Process.ApparmorProfile = profile
			}, "/bin/sleep", "1000"))
			if got := readProcFile(t, pid, "attr/current"); got != profile+" (enforce)" {
				t.Errorf("init's AppArmor label is %q, want %s (enforce)", got, profile)
			}
			res := tc.exec("e1", "/bin/sh", "-c", "cat /proc/self/attr/current; touch /tmp/x && echo wrote")
			if !strings.Contains(res.Stdout, profile+" (enforce)") || strings.Contains(res.Stdout, "wrote") || !strings.Contains(res.Stderr, "Permission denied") {
				t.Errorf("exec under the profile: want its label and the write under /tmp denied:\n%s", res)
			}
		})
		t.Run("selinux-label", func(t *testing.T) {
			tc := newCase(t, tg, "selinux")
			args := tc.specArgs([]string{"--rm"}, func(s *specs.Spec) { s.Process.SelinuxLabel = "system_u:system_r:container_t:s0:c1,c2" }, "/bin/true")
			tc.ctrFails(args, "selinux")
		})
		t.Run("mount-label", func(t *testing.T) {
			// As runc: the label goes, as SELinux's context option, to the
			// mounts that take one, also where SELinux is off; this host's
			// kernel then refuses the option (the /dev tmpfs first).
			tc := newCase(t, tg, "mountlabel")
			args := tc.specArgs([]string{"--rm"}, func(s *specs.Spec) { s.Linux.MountLabel = "system_u:object_r:container_file_t:s0" }, "/bin/true")
			if selinuxOn() {
				if res := tc.ctr("", args...); res.ExitCode != 0 {
					t.Errorf("mount label: %s", res)
				}
				return
			}
			tc.ctrFails(args, "/dev", "invalid argument")
		})
	})
}

// selinuxOn says whether the host runs SELinux.
func selinuxOn() bool {
	_, err := os.Stat("/sys/fs/selinux/enforce")
	return err == nil
}

// loadAppArmorProfile loads a profile that allows everything but rule, and
// removes it when the test ends.
func loadAppArmorProfile(t *testing.T, name, rule string) {
	t.Helper()
	parser, err := exec.LookPath("apparmor_parser")
	if err != nil {
		t.Fatalf("AppArmor is enabled but apparmor_parser is missing (hack/install-deps.sh installs it): %v", err)
	}
	profile := "profile " + name + " flags=(attach_disconnected,mediate_deleted) {\n" +
		"  capability,\n  network,\n  mount,\n  umount,\n  pivot_root,\n  ptrace,\n  signal,\n  unix,\n  file,\n" +
		"  " + rule + "\n}\n"
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(profile), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(parser, "-r", "-W", path).CombinedOutput(); err != nil {
		t.Fatalf("load AppArmor profile: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(parser, "-R", path).CombinedOutput(); err != nil {
			t.Errorf("remove AppArmor profile: %v\n%s", err, out)
		}
	})
}
