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
//	path         for args[0] without a slash: each file to try, in order
//	             (initproc.PathCandidates)
//	user         uid, gid (4 bytes each), then each additional gid (4 bytes)
//	umask        4 bytes
//	caps         the kernel's last capability (4 bytes), then bounding, effective,
//	             permitted, inheritable, ambient: 8-byte bit sets without the
//	             capabilities above it
//	no-new-privs no payload
//	rlimit       resource (4 bytes), soft, hard (8 bytes each), the rlimit's name
//	keyring      the session keyring's name
//	apparmor     the AppArmor profile
//	terminal     nothing, or its rows and columns (4 bytes each)
//	affinity     flags (4 bytes; 1: best effort), then the cpu mask (unix.CPUSet's 128 bytes)
//	seccomp      seccomp(2)'s flags (4 bytes), then the BPF program

// ProcessPlan is cfg as a plan for the C setup, or false when cfg is not an
// exec the C setup can apply whole. lastCap is initproc.LastCap, which the
// caller asks the kernel once: capabilities above it are left out, as the
// Go setup leaves them out.
func ProcessPlan(cfg *initproc.Config, lastCap int) ([]byte, bool) {
	p := cfg.Process
	if !cfg.Exec || p == nil || len(p.Args) == 0 || p.Args[0] == "" {
		return nil, false
	}
	if p.SelinuxLabel != "" || p.Scheduler != nil || p.IOPriority != nil ||
		cfg.Personality != nil || cfg.MemoryPolicy != nil ||
		(cfg.Seccomp != nil && (cfg.Seccomp.Listener() || cfg.Seccomp.CheckShape() != nil)) {
		return nil, false
	}
	var b planWriter
	for _, a := range p.Args {
		b.str(C.MINI_PLAN_ARG, a)
	}
	for _, e := range p.Env {
		b.str(C.MINI_PLAN_ENV, e)
	}
	if p.Cwd != "" {
		b.str(C.MINI_PLAN_CWD, p.Cwd)
	}
	if !strings.Contains(p.Args[0], "/") {
		for _, c := range initproc.PathCandidates(p.Args[0], p.Env) {
			b.str(C.MINI_PLAN_PATH, c)
		}
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
		known := uint64(1)<<(lastCap+1) - 1
		sets := binary.LittleEndian.AppendUint32(nil, uint32(lastCap))
		for _, names := range [][]string{c.Bounding, c.Effective, c.Permitted, c.Inheritable, c.Ambient} {
			var set uint64
			for _, n := range names {
				v, err := initproc.CapabilityFromName(n)
				if err != nil {
					return nil, false // the Go setup names the bad one
				}
				set |= 1 << v
			}
			sets = binary.LittleEndian.AppendUint64(sets, set&known)
		}
		b.record(C.MINI_PLAN_CAPS, sets)
	}
	if p.NoNewPrivileges {
		b.record(C.MINI_PLAN_NO_NEW_PRIVS, nil)
	}
	for _, rl := range p.Rlimits {
		res, ok := initproc.RlimitResource(rl.Type)
		if !ok {
			return nil, false
		}
		v := binary.LittleEndian.AppendUint32(nil, uint32(res))
		v = binary.LittleEndian.AppendUint64(v, rl.Soft)
		v = binary.LittleEndian.AppendUint64(v, rl.Hard)
		b.record(C.MINI_PLAN_RLIMIT, append(v, rl.Type...))
	}
	if !cfg.NoNewKeyring {
		b.str(C.MINI_PLAN_KEYRING, initproc.SessionKeyringName(cfg.ID))
	}
	if p.Terminal {
		var size []byte
		if cs := p.ConsoleSize; cs != nil {
			size = binary.LittleEndian.AppendUint32(nil, uint32(cs.Height))
			size = binary.LittleEndian.AppendUint32(size, uint32(cs.Width))
		}
		b.record(C.MINI_PLAN_TERMINAL, size)
	}
	if p.ApparmorProfile != "" {
		b.str(C.MINI_PLAN_APPARMOR, p.ApparmorProfile)
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
		v := binary.LittleEndian.AppendUint32(nil, uint32(s.Flags))
		b.record(C.MINI_PLAN_SECCOMP, append(v, s.Filter...))
	}
	if b.bad {
		return nil, false
	}
	return b.buf, true
}

// planWriter appends records; bad is set once a string could not be
// passed.
type planWriter struct {
	buf []byte
	bad bool
}

func (w *planWriter) record(tag byte, payload []byte) {
	w.buf = append(w.buf, tag)
	w.buf = binary.LittleEndian.AppendUint32(w.buf, uint32(len(payload)))
	w.buf = append(w.buf, payload...)
}

// str records s, which C reads as a NUL-terminated string: one holding a
// NUL cannot be passed (execve would see it cut short; Go refuses it).
func (w *planWriter) str(tag byte, s string) {
	if strings.IndexByte(s, 0) >= 0 {
		w.bad = true
		return
	}
	w.record(tag, []byte(s))
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
