package linux

import (
	"testing"

	"github.com/containerd/errdefs"
)

func TestPlaceCgroup(t *testing.T) {
	tests := []struct {
		name    string
		path    string
		systemd bool
		want    cgroupPlacement
	}{
		{"empty is the id", "", false, cgroupPlacement{Path: "/c1"}},
		{"absolute", "/default/c1", false, cgroupPlacement{Path: "/default/c1"}},
		{"relative is from the root", "default/c1", false, cgroupPlacement{Path: "/default/c1"}},
		{"cleaned", "/a//b/", false, cgroupPlacement{Path: "/a/b"}},
		{"slice form picks systemd", "system.slice:mini:c1", false,
			cgroupPlacement{Path: "/system.slice/mini-c1.scope", Unit: "mini-c1.scope", Slice: "system.slice"}},
		{"nested slice", "kubepods-besteffort-pod12.slice:cri-containerd:c1", true,
			cgroupPlacement{Path: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/cri-containerd-c1.scope",
				Unit: "cri-containerd-c1.scope", Slice: "kubepods-besteffort-pod12.slice"}},
		{"empty slice is system.slice", ":p:c1", true,
			cgroupPlacement{Path: "/system.slice/p-c1.scope", Unit: "p-c1.scope", Slice: "system.slice"}},
		{"no prefix", "user.slice::c1", true,
			cgroupPlacement{Path: "/user.slice/c1.scope", Unit: "c1.scope", Slice: "user.slice"}},
		{"root slice", "-.slice:p:c1", true,
			cgroupPlacement{Path: "/p-c1.scope", Unit: "p-c1.scope", Slice: "-.slice"}},
		{"systemd without a path", "", true,
			cgroupPlacement{Path: "/system.slice/mini-c1.scope", Unit: "mini-c1.scope", Slice: "system.slice"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := placeCgroup(tt.path, "c1", tt.systemd)
			if err != nil || got != tt.want {
				t.Fatalf("placeCgroup(%q, systemd=%v) = %+v, %v; want %+v", tt.path, tt.systemd, got, err, tt.want)
			}
		})
	}
}

func TestPlaceCgroupRejects(t *testing.T) {
	tests := []struct {
		name    string
		path    string
		systemd bool
		class   func(error) bool
	}{
		{"escapes upwards", "../x", false, errdefs.IsInvalidArgument},
		{"escapes in the middle", "/a/../../b", false, errdefs.IsInvalidArgument},
		{"newline", "/a\njoin 1073741824 /proc/1/ns/net", false, errdefs.IsInvalidArgument},
		{"nul", "/a\x00b", false, errdefs.IsInvalidArgument},
		{"systemd wants the slice form", "/default/c1", true, errdefs.IsInvalidArgument},
		{"slice without .slice", "system:p:c1", false, errdefs.IsInvalidArgument},
		{"slice with a slash", "a/b.slice:p:c1", false, errdefs.IsInvalidArgument},
		{"slice with an empty part", "a--b.slice:p:c1", false, errdefs.IsInvalidArgument},
		{"slice ending in a dash", "a-.slice:p:c1", false, errdefs.IsInvalidArgument},
		{"empty name", "system.slice:p:", false, errdefs.IsInvalidArgument},
		{"name escapes", "system.slice:p:../../x", false, errdefs.IsInvalidArgument},
		{"slice as the unit", "system.slice:p:pod.slice", false, errdefs.IsNotImplemented},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := placeCgroup(tt.path, "c1", tt.systemd)
			if !tt.class(err) {
				t.Fatalf("placeCgroup(%q, systemd=%v) = %+v, %v; want an error of the right class", tt.path, tt.systemd, got, err)
			}
		})
	}
}
