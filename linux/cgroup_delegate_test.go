package linux

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestWantsCgroupDelegation(t *testing.T) {
	cgroupNS := specs.LinuxNamespace{Type: specs.CgroupNamespace}
	joinedCgroupNS := specs.LinuxNamespace{Type: specs.CgroupNamespace, Path: "/proc/1/ns/cgroup"}
	mount := func(typ string, opts ...string) specs.Mount {
		return specs.Mount{Destination: "/sys/fs/cgroup", Type: typ, Source: "cgroup", Options: opts}
	}
	cases := []struct {
		name   string
		ns     []specs.LinuxNamespace
		mounts []specs.Mount
		want   bool
	}{
		{"rw cgroup in a new cgroup namespace", []specs.LinuxNamespace{cgroupNS}, []specs.Mount{mount("cgroup", "nosuid", "rw")}, true},
		{"rw cgroup2", []specs.LinuxNamespace{cgroupNS}, []specs.Mount{mount("cgroup2")}, true},
		{"destination not clean", []specs.LinuxNamespace{cgroupNS}, []specs.Mount{{Destination: "/sys/fs/cgroup/", Type: "cgroup"}}, true},
		{"read-only mount", []specs.LinuxNamespace{cgroupNS}, []specs.Mount{mount("cgroup", "nosuid", "ro")}, false},
		{"recursively read-only mount", []specs.LinuxNamespace{cgroupNS}, []specs.Mount{mount("cgroup", "rro")}, false},
		{"no cgroup namespace", nil, []specs.Mount{mount("cgroup")}, false},
		{"joined cgroup namespace", []specs.LinuxNamespace{joinedCgroupNS}, []specs.Mount{mount("cgroup")}, false},
		{"no cgroup mount", []specs.LinuxNamespace{cgroupNS}, nil, false},
		{"a bind at /sys/fs/cgroup", []specs.LinuxNamespace{cgroupNS}, []specs.Mount{{Destination: "/sys/fs/cgroup", Type: "bind", Source: "/sys/fs/cgroup"}}, false},
		{"a cgroup mount elsewhere", []specs.LinuxNamespace{cgroupNS}, []specs.Mount{{Destination: "/cg", Type: "cgroup"}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := &specs.Spec{Process: &specs.Process{}, Linux: &specs.Linux{Namespaces: tc.ns}, Mounts: tc.mounts}
			if got := wantsCgroupDelegation(spec); got != tc.want {
				t.Errorf("wantsCgroupDelegation = %v, want %v", got, tc.want)
			}
		})
	}
}
