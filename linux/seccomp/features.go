package seccomp

import (
	"fmt"
	"maps"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	libseccomp "github.com/seccomp/libseccomp-golang"
)

// specArchs are the architectures the runtime spec names.
var specArchs = []specs.Arch{
	specs.ArchX86, specs.ArchX86_64, specs.ArchX32, specs.ArchARM, specs.ArchAARCH64,
	specs.ArchMIPS, specs.ArchMIPS64, specs.ArchMIPS64N32, specs.ArchMIPSEL, specs.ArchMIPSEL64,
	specs.ArchMIPSEL64N32, specs.ArchPPC, specs.ArchPPC64, specs.ArchPPC64LE, specs.ArchS390,
	specs.ArchS390X, specs.ArchPARISC, specs.ArchPARISC64, specs.ArchRISCV64, specs.ArchLOONGARCH64,
	specs.ArchM68K, specs.ArchSH, specs.ArchSHEB,
}

// Features is the seccomp part of the runtime's features document: what
// Compile takes, and which flags this kernel supports.
func Features() *features.Seccomp {
	enabled := true
	f := &features.Seccomp{Enabled: &enabled, SupportedFlags: supportedProfileFlags()}
	for _, name := range slices.Sorted(maps.Keys(profileFlags)) {
		f.KnownFlags = append(f.KnownFlags, string(name))
	}
	for _, a := range slices.Sorted(maps.Keys(actions)) {
		f.Actions = append(f.Actions, string(a))
	}
	for _, op := range slices.Sorted(maps.Keys(operators)) {
		f.Operators = append(f.Operators, string(op))
	}
	for _, a := range specArchs {
		if _, err := archOf(a); err == nil {
			f.Archs = append(f.Archs, string(a))
		}
	}
	slices.Sort(f.Archs)
	return f
}

// LibraryVersion is libseccomp's version, for the features' annotations.
func LibraryVersion() string {
	major, minor, micro := libseccomp.GetLibraryVersion()
	return fmt.Sprintf("%d.%d.%d", major, minor, micro)
}
