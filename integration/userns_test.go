package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The container's ids 0..65535 are host ids 100000..165535 in the user
// namespace cases.
var usernsMapping = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}

// withUserNamespace gives the container a new user namespace with
// usernsMapping for uids and gids.
func withUserNamespace(s *specs.Spec) {
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
	s.Linux.UIDMappings = usernsMapping
	s.Linux.GIDMappings = usernsMapping
}

// Issue 10: a new user namespace with the spec's mappings. Root inside is
// host id 100000 (what /proc says from both sides), the process's own user
// maps too, an exec joins the same namespace, and a file the container's
// root writes into a host directory belongs to the mapped host id.
func TestUserNamespace(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		tc := newCase(t, tg, "userns")
		vol := SharedDir(t, suite.Dir, "vol-", 0o777)
		initPid := tc.startDetachedArgs(tc.specArgs([]string{"--detach"}, func(s *specs.Spec) {
			withUserNamespace(s)
			// A cgroup namespace too, as CRI gives one on cgroup v2: the
			// cgroup mount is made inside the user namespace.
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.CgroupNamespace})
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/tmp/vol", Type: "bind", Source: vol, Options: []string{"rbind", "rw"}})
		}, "/bin/sh", "-c", "touch /tmp/vol/by-root; exec sleep 1000"))
		wantMap := "0 100000 65536"
		for _, f := range []string{"uid_map", "gid_map"} {
			if got := strings.Join(strings.Fields(readProcFile(t, initPid, f)), " "); got != wantMap {
				t.Errorf("init's %s = %q, want %q", f, got, wantMap)
			}
		}
		pid, _ := strconv.Atoi(initPid)
		if uid, err := ProcStatusField(pid, "Uid"); err != nil || !strings.HasPrefix(uid, "100000\t") {
			t.Errorf("init's host uid: Uid: %q (%v), want 100000", uid, err)
		}
		initNS := ownNamespace(t, initPid, "user")

		res := tc.exec("e1", "/bin/sh", "-c", "cat /proc/self/uid_map; id -u; id -g; readlink /proc/self/ns/user; touch /tmp/vol/by-exec")
		if res.ExitCode != 0 {
			t.Fatalf("exec: %s", res)
		}
		out := strings.Fields(res.Stdout)
		if len(out) != 6 || strings.Join(out[:3], " ") != wantMap || out[3] != "0" || out[4] != "0" || out[5] != initNS {
			t.Errorf("exec sees %q; want the map %q, uid and gid 0, user namespace %s", res.Stdout, wantMap, initNS)
		}
		res = tc.ctr("", tc.execArgs([]string{"--user", "1000:1000"}, "e2", "/bin/sh", "-c", "id -u; touch /tmp/vol/by-1000")...)
		if res.ExitCode != 0 || strings.TrimSpace(res.Stdout) != "1000" {
			t.Errorf("exec as 1000: %s", res)
		}
		for name, want := range map[string]uint32{"by-root": 100000, "by-exec": 100000, "by-1000": 101000} {
			fi, err := os.Stat(filepath.Join(vol, name))
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if st := fi.Sys().(*syscall.Stat_t); st.Uid != want || st.Gid != want {
				t.Errorf("%s is owned by %d:%d on the host, want %d:%d", name, st.Uid, st.Gid, want, want)
			}
		}
	})
}

// Issue 10: a time namespace with the spec's offsets: the container's
// monotonic and boot clocks run ten days ahead (what /proc/uptime shows),
// for init and an exec. ctr 1.6 drops timeOffsets from a --config spec
// (its runtime-spec predates them), so there only the namespace is
// checked.
func TestTimeNamespace(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		if tg.runtime == RuncRuntime {
			t.Skip("runc before 1.2 has no time namespaces")
		}
		const tenDays = 10 * 24 * 3600
		offsets := tg.d.version.Name != "1.6"
		tc := newCase(t, tg, "timens")
		initPid := tc.startDetachedArgs(tc.specArgs([]string{"--detach"}, func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.TimeNamespace})
			s.Linux.TimeOffsets = map[string]specs.LinuxTimeOffset{"boottime": {Secs: tenDays}, "monotonic": {Secs: tenDays}}
		}, "/bin/sleep", "1000"))
		initNS := ownNamespace(t, initPid, "time")
		res := tc.exec("e1", "/bin/sh", "-c", "readlink /proc/self/ns/time; cut -d. -f1 /proc/uptime")
		if res.ExitCode != 0 {
			t.Fatalf("exec: %s", res)
		}
		out := strings.Fields(res.Stdout)
		if len(out) != 2 || out[0] != initNS {
			t.Fatalf("exec printed %q; want init's time namespace %s and an uptime", res.Stdout, initNS)
		}
		up, _ := strconv.Atoi(out[1])
		hostUp := hostUptime(t)
		if offsets && (up < hostUp+tenDays-60 || up > hostUp+tenDays+60) {
			t.Errorf("uptime in the container %d s, on the host %d s: want ten days more", up, hostUp)
		}
		if !offsets && (up < hostUp-60 || up > hostUp+60) {
			t.Errorf("uptime in the container %d s, on the host %d s: want the same (no offsets)", up, hostUp)
		}
	})
}

// Issue 10: the container's cgroup handed to its root. With a cgroup
// namespace of its own and a read-write cgroup mount, the container's
// root (host 100000) owns its cgroup and builds a subtree in it; with the
// mount read-only (as ctr's default spec has it) the cgroup stays host
// root's, which the container sees as the overflow uid. Cgroup v2 only:
// on v1 nothing is handed over, as with runc.
func TestCgroupDelegation(t *testing.T) {
	if !CgroupV2() {
		t.Skip("cgroup v2 only: on v1 a container's cgroup is not handed over (as with runc); the cgroup v2 guest runs this")
	}
	const script = "stat -c %u /sys/fs/cgroup; mkdir /sys/fs/cgroup/sub && echo $$ > /sys/fs/cgroup/sub/cgroup.procs && cat /proc/self/cgroup; echo status=$?"
	cases := []struct {
		name  string
		rw    bool
		owner string // of /sys/fs/cgroup, seen inside
		want  []string
	}{
		{"rw", true, "0", []string{"\n0::/sub\n", "status=0"}},
		{"ro", false, "65534", []string{"status=1"}},
	}
	forEachTarget(t, func(t *testing.T, tg target) {
		if tg.runtime == RuncRuntime {
			t.Skip("runc hands the cgroup over under its systemd driver only")
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				tc := newCase(t, tg, "cgdeleg-"+c.name)
				args := tc.specArgs([]string{"--rm"}, func(s *specs.Spec) {
					withUserNamespace(s)
					s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.CgroupNamespace})
					opts := []string{"nosuid", "noexec", "nodev", "relatime"}
					if !c.rw {
						opts = append(opts, "ro")
					}
					s.Mounts = append(s.Mounts, specs.Mount{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: opts})
				}, "/bin/sh", "-c", script)
				res := tc.ctr("", args...)
				if owner, _, _ := strings.Cut(res.Stdout, "\n"); owner != c.owner {
					t.Errorf("/sys/fs/cgroup belongs to %q inside, want %s:\n%s", owner, c.owner, res)
				}
				for _, w := range c.want {
					if !strings.Contains(res.Stdout, w) {
						t.Errorf("want %q in the output:\n%s", w, res)
					}
				}
			})
		}
	})
}

// ownNamespace is process pid's namespace of this kind (its
// /proc/PID/ns link), which must not be the host's.
func ownNamespace(t *testing.T, pid, kind string) string {
	t.Helper()
	host, _ := os.Readlink("/proc/self/ns/" + kind)
	own, _ := os.Readlink("/proc/" + pid + "/ns/" + kind)
	if own == host || own == "" {
		t.Fatalf("process %s's %s namespace %q is the host's %q", pid, kind, own, host)
	}
	return own
}

func hostUptime(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		t.Fatal(err)
	}
	up, _ := strconv.Atoi(strings.SplitN(string(b), ".", 2)[0])
	return up
}

// Issue 10, bad input: user and time namespace settings the kernel would
// refuse, or that make no sense, fail Create with InvalidArgument naming
// the field, and leave nothing behind (the case's leak check).
func TestUserTimeNamespaceBadInput(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*specs.Spec)
		want   []string
	}{
		{"maps-without-userns", func(s *specs.Spec) {
			s.Linux.UIDMappings, s.Linux.GIDMappings = usernsMapping, usernsMapping
		}, []string{"linux.uidMappings/gidMappings are set but linux.namespaces has no user namespace", "invalid argument"}},
		{"overlap", func(s *specs.Spec) {
			withUserNamespace(s)
			s.Linux.UIDMappings = append(append([]specs.LinuxIDMapping{}, usernsMapping...), specs.LinuxIDMapping{ContainerID: 70000, HostID: 165000, Size: 10})
		}, []string{"linux.uidMappings: [0] and [1] overlap in hostID", "invalid argument"}},
		{"root-unmapped", func(s *specs.Spec) {
			withUserNamespace(s)
			s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 1, HostID: 100000, Size: 65536}}
		}, []string{"linux.gidMappings does not map id 0", "invalid argument"}},
		{"user-unmapped", func(s *specs.Spec) {
			withUserNamespace(s)
			s.Process.User.UID = 70000
		}, []string{"user.uid 70000 is not mapped by linux.uidMappings", "invalid argument"}},
		{"userns-path-not-userns", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace, Path: "/proc/self/ns/net"})
		}, []string{"user path /proc/self/ns/net is a namespace of another type", "invalid argument"}},
		{"idmap-not-bind", func(s *specs.Spec) {
			withUserNamespace(s)
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/tmp/t", Type: "tmpfs", Source: "tmpfs", Options: []string{"idmap"}})
		}, []string{"(/tmp/t): idmapped mounts are only supported for bind mounts", "invalid argument"}},
		{"idmap-no-mappings", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/tmp/b", Type: "bind", Source: "/tmp", Options: []string{"rbind", "idmap"}})
		}, []string{"(/tmp/b): option idmap without uidMappings/gidMappings takes the container's user namespace's, and it has none", "invalid argument"}},
		{"timens-path-not-timens", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.TimeNamespace, Path: "/proc/self/ns/user"})
		}, []string{"time path /proc/self/ns/user is a namespace of another type", "invalid argument"}},
	}
	forEachTarget(t, func(t *testing.T, tg target) {
		if tg.runtime != MiniRuntime {
			t.Skip("the messages are this runtime's")
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				tc := newCase(t, tg, c.name)
				tc.ctrFails(tc.specArgs([]string{"--rm"}, c.mutate, "/bin/true"), c.want...)
			})
		}
	})
}

// Issue 10: idmapped bind mounts. A host directory whose files belong to
// host root shows them as the container's root in a container whose root
// is host 100000, through the mount's own mappings or (option "idmap"
// alone) the container's; what the container's root writes there belongs
// to host root. Without a user namespace, a mount mapping 0 to 1000 shows
// root's files as 1000's, and what user 1000 writes is root's on the host
// (root itself could not write there: host 0 has no id on that mount).
// ctr 1.6 drops mounts' mappings from a --config
// spec (its runtime-spec predates them), so there only "idmap" is tried.
func TestIDMappedMount(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		if tg.runtime == RuncRuntime {
			t.Skip("runc before 1.2 has no idmapped mounts")
		}
		newSpec := tg.d.version.Name != "1.6"
		cases := []struct {
			name   string
			userns bool
			mount  specs.Mount
			want   string // owner of root's file, as the container sees it
			owner  uint32 // host owner of what the container's root writes
		}{
			{"idmap-option", true, specs.Mount{Type: "bind", Options: []string{"rbind", "rw", "idmap"}}, "0:0", 0},
			{"mount-mappings", true, specs.Mount{Type: "bind", Options: []string{"rbind", "rw"}, UIDMappings: usernsMapping, GIDMappings: usernsMapping}, "0:0", 0},
			{"no-userns", false, specs.Mount{Type: "bind", Options: []string{"bind", "rw"},
				UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 1}}, GIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 1}}}, "1000:1000", 0},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				if !newSpec && len(c.mount.UIDMappings) > 0 {
					t.Skip("ctr 1.6 drops mounts' uidMappings/gidMappings")
				}
				tc := newCase(t, tg, c.name)
				vol := SharedDir(t, suite.Dir, "idm-", 0o755)
				if err := os.WriteFile(filepath.Join(vol, "f"), []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
				m := c.mount
				m.Source, m.Destination = vol, "/tmp/idm"
				res := tc.ctr("", tc.specArgs([]string{"--rm"}, func(s *specs.Spec) {
					if c.userns {
						withUserNamespace(s)
					} else {
						s.Process.User = specs.User{UID: 1000, GID: 1000}
					}
					s.Mounts = append(s.Mounts, m)
				}, "/bin/sh", "-c", "stat -c %u:%g /tmp/idm/f && touch /tmp/idm/new")...)
				if res.ExitCode != 0 && strings.Contains(res.Stderr, "cannot be idmapped on this kernel") {
					// The cgroup v2 guest's /tmp is an overlay over 9p,
					// which has no idmapped mounts: the refusal names
					// the mount, as it must.
					t.Skipf("the suite's filesystem cannot be idmapped here: %s", res.Stderr)
				}
				if res.ExitCode != 0 {
					t.Fatalf("run: %s", res)
				}
				if got := strings.TrimSpace(res.Stdout); got != c.want {
					t.Errorf("root's file shows as %s in the container, want %s", got, c.want)
				}
				fi, err := os.Stat(filepath.Join(vol, "new"))
				if err != nil {
					t.Fatal(err)
				}
				if st := fi.Sys().(*syscall.Stat_t); st.Uid != c.owner {
					t.Errorf("the container root's file is %d's on the host, want %d's", st.Uid, c.owner)
				}
			})
		}
	})
}
