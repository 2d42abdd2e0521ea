package initproc

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ContainerSpec is the part of a container's OCI spec that its init acts
// on, which the shim sends in Config. Not the whole specs.Spec: decoding
// any struct that holds a specs.Spec makes encoding/json build encoders for
// every type the spec can reach (resources, seccomp, Windows, VMs, ...),
// 0.45 ms of a fresh process's start here, and only this subset is used.
// The shim has already checked the whole spec, and refused what no one
// enforces; a field init comes to need is added here and in
// ContainerSpecOf, which the compiler then asks for.
type ContainerSpec struct {
	Process     *specs.Process    `json:"process,omitempty"`
	Root        *specs.Root       `json:"root,omitempty"`
	Hostname    string            `json:"hostname,omitempty"`
	Domainname  string            `json:"domainname,omitempty"`
	Mounts      []specs.Mount     `json:"mounts,omitempty"`
	Hooks       *specs.Hooks      `json:"hooks,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Linux       ContainerLinux    `json:"linux"`
}

// ContainerLinux is the part of a spec's linux section that init acts on.
type ContainerLinux struct {
	Namespaces []specs.LinuxNamespace `json:"namespaces,omitempty"`
	Devices    []specs.LinuxDevice    `json:"devices,omitempty"`
	// CgroupsPath is the cgroup the shim placed the container in, also
	// when the spec named none.
	CgroupsPath       string            `json:"cgroupsPath,omitempty"`
	RootfsPropagation string            `json:"rootfsPropagation,omitempty"`
	MaskedPaths       []string          `json:"maskedPaths,omitempty"`
	ReadonlyPaths     []string          `json:"readonlyPaths,omitempty"`
	MountLabel        string            `json:"mountLabel,omitempty"`
	Sysctl            map[string]string `json:"sysctl,omitempty"`
}

// ContainerSpecOf is what init gets of spec, whose container is in the
// cgroup at cgroupsPath.
func ContainerSpecOf(spec *specs.Spec, cgroupsPath string) *ContainerSpec {
	cs := &ContainerSpec{
		Process:     spec.Process,
		Root:        spec.Root,
		Hostname:    spec.Hostname,
		Domainname:  spec.Domainname,
		Mounts:      spec.Mounts,
		Hooks:       spec.Hooks,
		Annotations: spec.Annotations,
	}
	cs.Linux.CgroupsPath = cgroupsPath
	if lx := spec.Linux; lx != nil {
		cs.Linux.Namespaces = lx.Namespaces
		cs.Linux.Devices = lx.Devices
		cs.Linux.RootfsPropagation = lx.RootfsPropagation
		cs.Linux.MaskedPaths = lx.MaskedPaths
		cs.Linux.ReadonlyPaths = lx.ReadonlyPaths
		cs.Linux.MountLabel = lx.MountLabel
		cs.Linux.Sysctl = lx.Sysctl
	}
	return cs
}
