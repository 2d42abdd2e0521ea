package initproc

import (
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestContainerSpecOf(t *testing.T) {
	spec := &specs.Spec{
		Process:     &specs.Process{Args: []string{"/bin/sh"}},
		Root:        &specs.Root{Path: "rootfs", Readonly: true},
		Hostname:    "h",
		Domainname:  "d",
		Mounts:      []specs.Mount{{Destination: "/proc", Type: "proc"}},
		Hooks:       &specs.Hooks{StartContainer: []specs.Hook{{Path: "/bin/true"}}},
		Annotations: map[string]string{"a": "b"},
		Linux: &specs.Linux{
			Namespaces:        []specs.LinuxNamespace{{Type: specs.PIDNamespace}},
			Devices:           []specs.LinuxDevice{{Path: "/dev/fuse"}},
			CgroupsPath:       "/from-spec",
			RootfsPropagation: "rslave",
			MaskedPaths:       []string{"/proc/kcore"},
			ReadonlyPaths:     []string{"/proc/sys"},
			MountLabel:        "label",
			Sysctl:            map[string]string{"net.ipv4.ip_forward": "1"},
		},
	}
	got := ContainerSpecOf(spec, "/placed")
	want := &ContainerSpec{
		Process: spec.Process, Root: spec.Root, Hostname: "h", Domainname: "d",
		Mounts: spec.Mounts, Hooks: spec.Hooks, Annotations: spec.Annotations,
		Linux: ContainerLinux{
			Namespaces: spec.Linux.Namespaces, Devices: spec.Linux.Devices, CgroupsPath: "/placed",
			RootfsPropagation: "rslave", MaskedPaths: spec.Linux.MaskedPaths, ReadonlyPaths: spec.Linux.ReadonlyPaths,
			MountLabel: "label", Sysctl: spec.Linux.Sysctl,
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ContainerSpecOf:\n got %+v\nwant %+v", got, want)
	}
	if got := ContainerSpecOf(&specs.Spec{}, "/placed"); got.Linux.CgroupsPath != "/placed" {
		t.Errorf("a spec without linux: %+v", got)
	}
}

// The config a container process decodes first thing reaches no type of
// the spec it does not use: encoding/json builds an encoder for every type
// a decoded struct can reach, which for specs.Spec or specs.Linux costs a
// fresh process about half a millisecond.
func TestConfigReachesNoWholeSpec(t *testing.T) {
	heavy := []reflect.Type{
		reflect.TypeFor[specs.Spec](), reflect.TypeFor[specs.Linux](),
		reflect.TypeFor[specs.LinuxResources](), reflect.TypeFor[specs.LinuxSeccomp](),
	}
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type)
	walk = func(ty reflect.Type) {
		if seen[ty] {
			return
		}
		seen[ty] = true
		switch ty.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Array:
			walk(ty.Elem())
		case reflect.Map:
			walk(ty.Key())
			walk(ty.Elem())
		case reflect.Struct:
			for i := 0; i < ty.NumField(); i++ {
				walk(ty.Field(i).Type)
			}
		}
	}
	walk(reflect.TypeFor[Config]())
	walk(reflect.TypeFor[Message]())
	for _, h := range heavy {
		if seen[h] {
			t.Errorf("Config reaches %v", h)
		}
	}
}
