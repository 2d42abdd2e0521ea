//go:build linux && cgo

package nsexec

// #include "nsexec.h"
import "C"

import (
	"encoding/binary"
	"strings"

	"github.com/minishim/containerd-shim-mini-v2/linux/initproc"
)

// An exec's process can be set up by the preamble itself (process.c), so
// that no Go runtime starts in it: about 1.5 ms of every exec's Start,
// which probes pay again and again. The shim asks for it with a "process"
// line in the bootstrap, and sends a plan instead of initproc.Config once
// it has read the pid line; the process answers with the frames the Go
// side would (ready, or an error with its class), waits for start and
// execve()s.
//
// The C setup applies what most execs ask for: args, env, cwd, user and
// groups, umask, capabilities, no_new_privs, rlimits, the session keyring,
// a terminal, an AppArmor profile, the final cpu affinity and a seccomp
// filter without a listener. An exec that asks for more (an SELinux label,
// scheduling, I/O priority, personality, a memory policy, a seccomp
// listener), or whose spec the Go side would refuse, is set up in Go as
// before.
//
// A plan is a run of records: a tag byte (MINI_PLAN_* of nsexec.h), a
// 4-byte little-endian length and the payload. Numbers are little-endian.
//
//	arg, env     one string each, in order
//	cwd          a string
//	user         uid, gid (4 bytes each), then each additional gid (4 bytes)
//	umask        4 bytes
//	caps         bounding, effective, permitted, inheritable, ambient: 8-byte bit sets
//	no-new-privs no payload
//	rlimit       resource (4 bytes), soft, hard (8 bytes each), the rlimit's name
//	keyring      the session keyring's name
//	apparmor     the AppArmor profile
//	terminal     nothing, or its rows and columns (4 bytes each)
//	affinity     flags (4 bytes; 1: best effort), then the cpu mask (unix.CPUSet's 128 bytes)
//	seccomp      seccomp(2)'s flags (4 bytes), then the BPF program

// ProcessPlan is cfg as a plan for the C setup, or false when cfg is not an
// exec the C setup can apply whole.
func ProcessPlan(cfg *initproc.Config) ([]byte, bool) {
	p := cfg.Process
	if !cfg.Exec || p == nil || len(p.Args) == 0 || p.Args[0] == "" {
		return nil, false
	}
	if p.SelinuxLabel != "" || p.Scheduler != nil || p.IOPriority != nil ||
		cfg.Personality != nil || cfg.MemoryPolicy != nil ||
		(cfg.Seccomp != nil && cfg.Seccomp.Listener()) {
		return nil, false
	}
	var b planWriter
	for _, a := range p.Args {
		if !b.str(C.MINI_PLAN_ARG, a) {
			return nil, false
		}
	}
	for _, e := range p.Env {
		if !b.str(C.MINI_PLAN_ENV, e) {
			return nil, false
		}
	}
	if p.Cwd != "" && !b.str(C.MINI_PLAN_CWD, p.Cwd) {
		return nil, false
	}
	user := binary.LittleEndian.AppendUint32(nil, p.User.UID)
	user = binary.LittleEndian.AppendUint32(user, p.User.GID)
	for _, g := range p.User.AdditionalGids {
		user = binary.LittleEndian.AppendUint32(user, g)
	}
	b.record(C.MINI_PLAN_USER, user)
	if p.User.Umask != nil {
		b.record(C.MINI_PLAN_UMASK, binary.LittleEndian.AppendUint32(nil, *p.User.Umask))
	}
	if c := p.Capabilities; c != nil {
		var sets []byte
		for _, names := range [][]string{c.Bounding, c.Effective, c.Permitted, c.Inheritable, c.Ambient} {
			var set uint64
			for _, n := range names {
				v, err := initproc.CapabilityFromName(n)
				if err != nil || v >= 64 {
					return nil, false // the Go side names the bad one
				}
				set |= 1 << v
			}
			sets = binary.LittleEndian.AppendUint64(sets, set)
		}
		b.record(C.MINI_PLAN_CAPS, sets)
	}
	if p.NoNewPrivileges {
		b.record(C.MINI_PLAN_NO_NEW_PRIVS, nil)
	}
	for _, rl := range p.Rlimits {
		res, ok := initproc.RlimitResource(rl.Type)
		if !ok || strings.IndexByte(rl.Type, 0) >= 0 {
			return nil, false
		}
		v := binary.LittleEndian.AppendUint32(nil, uint32(res))
		v = binary.LittleEndian.AppendUint64(v, rl.Soft)
		v = binary.LittleEndian.AppendUint64(v, rl.Hard)
		b.record(C.MINI_PLAN_RLIMIT, append(v, rl.Type...))
	}
	if !cfg.NoNewKeyring && !b.str(C.MINI_PLAN_KEYRING, initproc.SessionKeyringName(cfg.ID)) {
		return nil, false
	}
	if p.Terminal {
		var size []byte
		if cs := p.ConsoleSize; cs != nil {
			size = binary.LittleEndian.AppendUint32(nil, uint32(cs.Height))
			size = binary.LittleEndian.AppendUint32(size, uint32(cs.Width))
		}
		b.record(C.MINI_PLAN_TERMINAL, size)
	}
	if p.ApparmorProfile != "" && !b.str(C.MINI_PLAN_APPARMOR, p.ApparmorProfile) {
		return nil, false
	}
	if a := cfg.Affinity; a != nil {
		var flags uint32
		if cfg.AffinityBestEffort {
			flags = 1
		}
		v := binary.LittleEndian.AppendUint32(nil, flags)
		for _, word := range a {
			v = binary.LittleEndian.AppendUint64(v, uint64(word))
		}
		b.record(C.MINI_PLAN_AFFINITY, v)
	}
	if s := cfg.Seccomp; s != nil {
		if len(s.Filter) == 0 || len(s.Filter)%8 != 0 || len(s.Filter)/8 > 4096 {
			return nil, false
		}
		v := binary.LittleEndian.AppendUint32(nil, uint32(s.Flags))
		b.record(C.MINI_PLAN_SECCOMP, append(v, s.Filter...))
	}
	return b.buf, true
}

type planWriter struct{ buf []byte }

func (w *planWriter) record(tag byte, payload []byte) {
	w.buf = append(w.buf, tag)
	w.buf = binary.LittleEndian.AppendUint32(w.buf, uint32(len(payload)))
	w.buf = append(w.buf, payload...)
}

// str records s, which C reads as a NUL-terminated string: one holding a
// NUL cannot be passed (execve would see it cut short; Go refuses it).
func (w *planWriter) str(tag byte, s string) bool {
	if strings.IndexByte(s, 0) >= 0 {
		return false
	}
	w.record(tag, []byte(s))
	return true
}

// capabilityNames are the names process.c gives capabilities in its
// errors, by number.
func capabilityNames() []string {
	var names []string
	for c := 0; ; c++ {
		n := C.mini_cap_name(C.int(c))
		if n == nil {
			return names
		}
		names = append(names, C.GoString(n))
	}
}
