package linux

import (
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"golang.org/x/sys/unix"

	"github.com/minishim/containerd-shim-mini-v2/linux/hooks"
	"github.com/minishim/containerd-shim-mini-v2/linux/initproc"
	"github.com/minishim/containerd-shim-mini-v2/linux/seccomp"
)

// Features is the OCI features document of this runtime on this host
// (`runc features` for runc): what Create enforces. containerd's CRI reads
// it to decide what a RuntimeClass may use (recursive read-only mounts,
// user namespaces), so it lists only what works: a field Create refuses as
// Unimplemented is left out or reported disabled.
//
// Left out as Unimplemented: linux.netDevices, linux.intelRdt.
func Features() *features.Features {
	yes, no := true, false
	// Idmapped mounts need mount_setattr(2); whether a filesystem takes
	// one is the kernel's to say at Create.
	idmap := mountSetattrWorks()
	f := &features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: specs.Version,
		Hooks:         hooks.Names(),
		MountOptions:  initproc.MountOptionNames(idmap),
		Linux: &features.Linux{
			Namespaces:   implementedNamespaces(),
			Capabilities: initproc.CapabilityNames(),
			Cgroup:       &features.Cgroup{V1: &yes, V2: &yes, Systemd: &yes, SystemdUser: &no, Rdma: &yes},
			Seccomp:      seccomp.Features(),
			// Supported by this runtime (as runc reports them); whether the
			// host runs them decides at Create.
			Apparmor: &features.Apparmor{Enabled: &yes},
			Selinux:  &features.Selinux{Enabled: &yes},
			IntelRdt: &features.IntelRdt{Enabled: &no},
			MountExtensions: &features.MountExtensions{
				IDMap: &features.IDMap{Enabled: &idmap},
			},
			NetDevices: &features.NetDevices{Enabled: &no},
		},
		Annotations: map[string]string{
			"io.github.seccomp.libseccomp.version": seccomp.LibraryVersion(),
		},
	}
	return f
}

// implementedNamespaces are the namespace types Create takes, sorted.
func implementedNamespaces() []string {
	var out []string
	for t := range namespaceFlags {
		out = append(out, string(t))
	}
	slices.Sort(out)
	return out
}

// mountSetattrWorks asks the kernel: mount_setattr on a bad fd fails with
// EBADF where the call exists (Linux 5.12), ENOSYS where it does not.
func mountSetattrWorks() bool {
	err := unix.MountSetattr(-1, "", 0, &unix.MountAttr{})
	return err != unix.ENOSYS
}
