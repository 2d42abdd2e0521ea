// Package bpf is a compiled seccomp program and its loading: the half of
// linux/seccomp that container processes need. It links no libseccomp, so
// the init binary, which every container init and Go-set-up exec starts
// from, pays nothing for the compiler (libseccomp-golang probes the kernel
// in its package initialiser).
package bpf

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// MaxInstructions is the kernel's BPF_MAXINSNS: a longer program is
// refused at load.
const MaxInstructions = 4096

// Program is a compiled profile: what the container process hands to
// seccomp(SECCOMP_SET_MODE_FILTER, Flags, ...).
type Program struct {
	// Filter is the BPF program as the kernel takes it: struct
	// sock_filter entries of 8 bytes, in native byte order.
	Filter []byte `json:"filter"`
	// Flags are seccomp(2)'s SECCOMP_FILTER_FLAG_* bits.
	Flags uint `json:"flags,omitempty"`
}

// Listener says whether loading returns a user notification fd, which
// must go to the profile's listenerPath.
func (p *Program) Listener() bool { return p.Flags&unix.SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 }

// CheckShape says what is wrong with the program's shape, if anything: it
// must be whole 8-byte BPF instructions, 1 to MaxInstructions of them.
func (p *Program) CheckShape() error {
	if n := len(p.Filter) / 8; n == 0 || len(p.Filter)%8 != 0 || n > MaxInstructions {
		return fmt.Errorf("a program of %d bytes is not %d-byte BPF instructions, 1 to %d of them", len(p.Filter), 8, MaxInstructions)
	}
	return nil
}
