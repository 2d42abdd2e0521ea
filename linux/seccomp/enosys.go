package seccomp

import (
	"encoding/binary"
	"fmt"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// A profile names the system calls its author knew. A call added to the
// kernel later (fchmodat2, say, under containerd 1.6's default profile)
// would otherwise get the profile's default action, usually EPERM or a
// kill, and a libc that tries the new call first and falls back only on
// ENOSYS breaks. So, as runc does, every call numbered above the highest
// one the profile names (per architecture) returns ENOSYS, as on a kernel
// too old to have it: a few instructions put before libseccomp's program.

// auditArchs are the architectures the ENOSYS prefix knows the audit
// number of; the others go straight to libseccomp's program.
var auditArchs = map[libseccomp.ScmpArch]uint32{
	libseccomp.ArchAMD64:   unix.AUDIT_ARCH_X86_64,
	libseccomp.ArchX86:     unix.AUDIT_ARCH_I386,
	libseccomp.ArchARM64:   unix.AUDIT_ARCH_AARCH64,
	libseccomp.ArchARM:     unix.AUDIT_ARCH_ARM,
	libseccomp.ArchRISCV64: unix.AUDIT_ARCH_RISCV64,
	libseccomp.ArchPPC64LE: unix.AUDIT_ARCH_PPC64LE,
}

// x32SyscallBit marks x32 calls, which share x86-64's audit architecture.
const x32SyscallBit = 0x40000000

// Offsets into struct seccomp_data.
const (
	dataNr   = 0
	dataArch = 4
)

// needsENOSYSPrefix says whether calls unknown to the profile would end
// anywhere but allowed (or already ENOSYS).
func needsENOSYSPrefix(p *specs.LinuxSeccomp) bool {
	switch p.DefaultAction {
	case specs.ActAllow, specs.ActLog, specs.ActTrace:
		return false
	case specs.ActErrno:
		return p.DefaultErrnoRet == nil || *p.DefaultErrnoRet != uint(unix.ENOSYS)
	}
	return true
}

// enosysPrefix builds the instructions that answer ENOSYS to calls
// numbered above the highest one the profile names on each architecture
// of the filter, and go on to the program that follows otherwise.
func enosysPrefix(p *specs.LinuxSeccomp, arches []libseccomp.ScmpArch) ([]byte, error) {
	var names []string
	for _, sc := range p.Syscalls {
		names = append(names, sc.Names...)
	}
	highest := func(arch libseccomp.ScmpArch, x32 bool) (uint32, bool) {
		var top uint32
		found := false
		for _, n := range names {
			nr, err := libseccomp.GetSyscallFromNameByArch(n, arch)
			if err != nil || nr < 0 {
				continue
			}
			v := uint32(nr)
			if x32 != (v&x32SyscallBit != 0) {
				continue
			}
			if !found || v > top {
				top, found = v, true
			}
		}
		return top, found
	}
	hasX32 := slices.Contains(arches, libseccomp.ArchX32)

	var a asm
	a.op(bpfLd, dataArch)
	type block struct {
		label string
		arch  libseccomp.ScmpArch
	}
	var blocks []block
	for _, arch := range arches {
		audit, ok := auditArchs[arch]
		if !ok {
			continue
		}
		label := "arch-" + arch.String()
		a.jump(bpfJeq, audit, label, "")
		blocks = append(blocks, block{label, arch})
	}
	a.ja("program")
	for _, b := range blocks {
		a.label(b.label)
		a.op(bpfLd, dataNr)
		if b.arch == libseccomp.ArchAMD64 {
			// x32 calls carry their bit: judged against x32's highest, or
			// left to the program (which refuses them) without x32.
			a.jump(bpfJset, x32SyscallBit, "x32", "")
		}
		if top, ok := highest(b.arch, false); ok {
			a.jump(bpfJgt, top, "enosys", "program")
		} else {
			a.ja("program")
		}
	}
	a.label("x32")
	if top, ok := highest(libseccomp.ArchX32, true); hasX32 && ok {
		a.jump(bpfJgt, top, "enosys", "program")
	} else {
		a.ja("program")
	}
	a.label("enosys")
	a.op(bpfRet, unix.SECCOMP_RET_ERRNO|uint32(unix.ENOSYS))
	a.label("program")
	return a.assemble()
}

// BPF opcodes the prefix uses.
const (
	bpfLd   = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	bpfJeq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	bpfJgt  = unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K
	bpfJset = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
	bpfJa   = unix.BPF_JMP | unix.BPF_JA
	bpfRet  = unix.BPF_RET | unix.BPF_K
)

// asm lays out instructions whose jumps name labels; "" is the next
// instruction.
type asm struct {
	ins    []instruction
	labels map[string]int
}

type instruction struct {
	code         uint16
	k            uint32
	jt, jf, long string // targets; long is ja's
}

func (a *asm) op(code uint16, k uint32) { a.ins = append(a.ins, instruction{code: code, k: k}) }

func (a *asm) jump(code uint16, k uint32, jt, jf string) {
	a.ins = append(a.ins, instruction{code: code, k: k, jt: jt, jf: jf})
}

func (a *asm) ja(target string) { a.ins = append(a.ins, instruction{code: bpfJa, long: target}) }

func (a *asm) label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	a.labels[name] = len(a.ins)
}

// assemble resolves the labels into forward offsets and encodes struct
// sock_filter entries in native byte order.
func (a *asm) assemble() ([]byte, error) {
	offset := func(i int, target string) (uint32, error) {
		if target == "" {
			return 0, nil
		}
		t, ok := a.labels[target]
		if !ok || t <= i {
			return 0, fmt.Errorf("bpf prefix: bad jump to %q from %d", target, i)
		}
		return uint32(t - i - 1), nil
	}
	out := make([]byte, 0, 8*len(a.ins))
	for i, in := range a.ins {
		jt, err := offset(i, in.jt)
		if err != nil {
			return nil, err
		}
		jf, err := offset(i, in.jf)
		if err != nil {
			return nil, err
		}
		k := in.k
		if in.long != "" {
			if k, err = offset(i, in.long); err != nil {
				return nil, err
			}
		}
		if jt > 255 || jf > 255 {
			return nil, fmt.Errorf("bpf prefix: jump from %d too long", i)
		}
		var b [8]byte
		binary.NativeEndian.PutUint16(b[0:], in.code)
		b[2], b[3] = byte(jt), byte(jf)
		binary.NativeEndian.PutUint32(b[4:], k)
		out = append(out, b[:]...)
	}
	return out, nil
}
