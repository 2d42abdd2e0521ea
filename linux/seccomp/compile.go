package seccomp

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"

	"github.com/minishim/containerd-shim-mini-v2/linux/seccomp/bpf"
)

// Program is a compiled profile (package bpf, which container processes
// load it with).
type Program = bpf.Program

// maxInstructions is the kernel's BPF_MAXINSNS.
const maxInstructions = bpf.MaxInstructions

// Load installs prog for the calling thread; see bpf.Load.
func Load(prog *Program) (int, error) { return bpf.Load(prog) }

// defaultErrno is what an ERRNO action without errnoRet returns, as runc.
const defaultErrno = int16(unix.EPERM)

// actions maps the OCI actions to libseccomp's; ERRNO and TRACE carry an
// errno on top.
var actions = map[specs.LinuxSeccompAction]libseccomp.ScmpAction{
	specs.ActKill:        libseccomp.ActKillThread,
	specs.ActKillThread:  libseccomp.ActKillThread,
	specs.ActKillProcess: libseccomp.ActKillProcess,
	specs.ActTrap:        libseccomp.ActTrap,
	specs.ActErrno:       libseccomp.ActErrno,
	specs.ActTrace:       libseccomp.ActTrace,
	specs.ActAllow:       libseccomp.ActAllow,
	specs.ActLog:         libseccomp.ActLog,
	specs.ActNotify:      libseccomp.ActNotify,
}

// actionOf maps an OCI action with its errno (nil: the default) to
// libseccomp's.
func actionOf(a specs.LinuxSeccompAction, errnoRet *uint) (libseccomp.ScmpAction, error) {
	action, ok := actions[a]
	if !ok {
		return libseccomp.ActInvalid, fmt.Errorf("%q is not a seccomp action", a)
	}
	if a != specs.ActErrno && a != specs.ActTrace {
		return action, nil
	}
	ret := defaultErrno
	if errnoRet != nil {
		if *errnoRet > 4095 {
			return libseccomp.ActInvalid, fmt.Errorf("errno %d is out of range (at most 4095)", *errnoRet)
		}
		ret = int16(*errnoRet)
	}
	return action.SetReturnCode(ret), nil
}

var operators = map[specs.LinuxSeccompOperator]libseccomp.ScmpCompareOp{
	specs.OpNotEqual:     libseccomp.CompareNotEqual,
	specs.OpLessThan:     libseccomp.CompareLess,
	specs.OpLessEqual:    libseccomp.CompareLessOrEqual,
	specs.OpEqualTo:      libseccomp.CompareEqual,
	specs.OpGreaterEqual: libseccomp.CompareGreaterEqual,
	specs.OpGreaterThan:  libseccomp.CompareGreater,
	specs.OpMaskedEqual:  libseccomp.CompareMaskedEqual,
}

// profileFlags are the seccomp(2) filter flags a profile may name; the
// runtime sets NEW_LISTENER and TSYNC_ESRCH itself.
var profileFlags = map[specs.LinuxSeccompFlag]uint{
	"SECCOMP_FILTER_FLAG_TSYNC":              unix.SECCOMP_FILTER_FLAG_TSYNC,
	"SECCOMP_FILTER_FLAG_LOG":                unix.SECCOMP_FILTER_FLAG_LOG,
	"SECCOMP_FILTER_FLAG_SPEC_ALLOW":         unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW,
	"SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
}

// supportedProfileFlags are the names of profileFlags this kernel takes,
// in order.
func supportedProfileFlags() []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(profileFlags)) {
		if flagSupported(profileFlags[name]) {
			out = append(out, string(name))
		}
	}
	return out
}

// archOf is libseccomp's architecture for a spec's SCMP_ARCH_ name.
func archOf(a specs.Arch) (libseccomp.ScmpArch, error) {
	return libseccomp.GetArchFromString(strings.TrimPrefix(string(a), "SCMP_ARCH_"))
}

// Compile builds the BPF program of profile. Errors name the field at
// fault and are InvalidArgument, or Unimplemented where this host's
// libseccomp lacks what the profile asks for.
func Compile(profile *specs.LinuxSeccomp) (*Program, error) {
	invalid := func(field string, err error) error {
		return fmt.Errorf("linux.seccomp.%s: %v: %w", field, err, errdefs.ErrInvalidArgument)
	}
	defAction, err := actionOf(profile.DefaultAction, profile.DefaultErrnoRet)
	if err != nil {
		return nil, invalid("defaultAction", err)
	}
	if profile.DefaultAction == specs.ActNotify {
		// The process that loads the filter must still send its listener
		// fd out; with every call notifying, nothing would answer.
		return nil, invalid("defaultAction", errors.New("SCMP_ACT_NOTIFY cannot be the default action"))
	}
	prog := &Program{}
	for i, f := range profile.Flags {
		bit, ok := profileFlags[f]
		if !ok {
			return nil, invalid(fmt.Sprintf("flags[%d]", i), fmt.Errorf("unknown flag %q", f))
		}
		if !flagSupported(bit) {
			return nil, fmt.Errorf("linux.seccomp.flags[%d]: this kernel does not support %s: %w", i, f, errdefs.ErrNotImplemented)
		}
		prog.Flags |= bit
	}
	if profile.Flags == nil && flagSupported(unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW) {
		// As runc: a profile that names no flags (not even an empty list)
		// leaves speculative store bypass as the host has it, instead of
		// the kernel forcing the mitigation on every filtered process.
		prog.Flags |= unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW
	}

	filter, err := libseccomp.NewFilter(defAction)
	if err != nil {
		return nil, fmt.Errorf("linux.seccomp: new filter: %w", asClass(err))
	}
	defer filter.Release()
	// The filter's architectures: the native one and the profile's.
	var arches []libseccomp.ScmpArch
	if native, err := libseccomp.GetNativeArch(); err == nil {
		arches = append(arches, native)
	}
	for i, a := range profile.Architectures {
		arch, err := archOf(a)
		if err != nil {
			return nil, invalid(fmt.Sprintf("architectures[%d]", i), fmt.Errorf("%q is not an architecture", a))
		}
		if err := filter.AddArch(arch); err != nil {
			return nil, fmt.Errorf("linux.seccomp.architectures[%d] %s: %w", i, a, asClass(err))
		}
		if !slices.Contains(arches, arch) {
			arches = append(arches, arch)
		}
	}
	for i, sc := range profile.Syscalls {
		field := fmt.Sprintf("syscalls[%d]", i)
		action, err := actionOf(sc.Action, sc.ErrnoRet)
		if err != nil {
			return nil, invalid(field+".action", err)
		}
		if sc.Action == specs.ActNotify {
			if slices.Contains(sc.Names, "write") {
				// The process that loads the filter writes its listener fd's
				// number to the shim afterwards; nothing could answer that
				// write yet.
				return nil, invalid(field, errors.New("SCMP_ACT_NOTIFY cannot be used for the write syscall"))
			}
			prog.Flags |= unix.SECCOMP_FILTER_FLAG_NEW_LISTENER
		}
		conds, err := conditions(sc.Args)
		if err != nil {
			return nil, fmt.Errorf("linux.seccomp.%s.%w", field, err)
		}
		if action == defAction {
			// libseccomp refuses such a rule, and it changes nothing.
			continue
		}
		for _, name := range sc.Names {
			call, err := libseccomp.GetSyscallFromName(name)
			if err != nil {
				// A call this libseccomp (or kernel) does not know cannot
				// be made here either way; skipped, as runc does.
				continue
			}
			for _, c := range conds {
				if err := filter.AddRuleConditional(call, action, c); err != nil {
					return nil, fmt.Errorf("linux.seccomp.%s %s: %w", field, name, asClass(err))
				}
			}
		}
	}
	if !prog.Listener() {
		// It only changes how a listener's target waits; the kernel
		// refuses it without one.
		prog.Flags &^= unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
	} else {
		if !flagSupported(unix.SECCOMP_FILTER_FLAG_NEW_LISTENER) {
			return nil, fmt.Errorf("linux.seccomp: SCMP_ACT_NOTIFY needs Linux 5.0 or later: %w", errdefs.ErrNotImplemented)
		}
		if profile.ListenerPath == "" {
			return nil, invalid("listenerPath", errors.New("SCMP_ACT_NOTIFY is used but no listenerPath is set"))
		}
		if prog.Flags&unix.SECCOMP_FILTER_FLAG_TSYNC != 0 {
			// The kernel takes TSYNC with a listener only when a thread
			// it cannot sync is reported as ESRCH.
			prog.Flags |= unix.SECCOMP_FILTER_FLAG_TSYNC_ESRCH
		}
	}
	if prog.Filter, err = exportBPF(filter); err != nil {
		return nil, fmt.Errorf("linux.seccomp: export BPF: %w", err)
	}
	if needsENOSYSPrefix(profile) {
		prefix, err := enosysPrefix(profile, arches)
		if err != nil {
			return nil, fmt.Errorf("linux.seccomp: %w", err)
		}
		prog.Filter = append(prefix, prog.Filter...)
	}
	if n := len(prog.Filter) / 8; n > maxInstructions {
		return nil, fmt.Errorf("linux.seccomp: the profile compiles to %d BPF instructions, more than the kernel's %d: %w", n, maxInstructions, errdefs.ErrInvalidArgument)
	}
	return prog, nil
}

// conditions turns a syscall's args into the condition sets to add, one
// rule each. Conditions on different arguments must all hold (one rule);
// several on the same argument could never all hold, so each gets a rule
// of its own, any of which matches (as runc reads such profiles). Errors
// start with the field at fault ("args[1].op ...").
func conditions(args []specs.LinuxSeccompArg) ([][]libseccomp.ScmpCondition, error) {
	if len(args) == 0 {
		return [][]libseccomp.ScmpCondition{nil}, nil
	}
	all := make([]libseccomp.ScmpCondition, 0, len(args))
	sameIndex := false
	seen := map[uint]bool{}
	for i, a := range args {
		op, ok := operators[a.Op]
		if !ok {
			return nil, fmt.Errorf("args[%d].op %q is not a comparison operator: %w", i, a.Op, errdefs.ErrInvalidArgument)
		}
		if a.Index > 5 {
			return nil, fmt.Errorf("args[%d].index %d is out of range (a syscall has 6 arguments): %w", i, a.Index, errdefs.ErrInvalidArgument)
		}
		var c libseccomp.ScmpCondition
		var err error
		if op == libseccomp.CompareMaskedEqual {
			c, err = libseccomp.MakeCondition(a.Index, op, a.Value, a.ValueTwo)
		} else {
			c, err = libseccomp.MakeCondition(a.Index, op, a.Value)
		}
		if err != nil {
			return nil, fmt.Errorf("args[%d]: %v: %w", i, err, errdefs.ErrInvalidArgument)
		}
		sameIndex = sameIndex || seen[a.Index]
		seen[a.Index] = true
		all = append(all, c)
	}
	if !sameIndex {
		return [][]libseccomp.ScmpCondition{all}, nil
	}
	out := make([][]libseccomp.ScmpCondition, len(all))
	for i, c := range all {
		out[i] = []libseccomp.ScmpCondition{c}
	}
	return out, nil
}

// exportBPF writes the filter's program out. libseccomp before 2.6 can
// only write to a file descriptor: a memfd then.
func exportBPF(filter *libseccomp.ScmpFilter) ([]byte, error) {
	if b, err := filter.ExportBPFMem(); err == nil {
		return b, nil
	}
	fd, err := unix.MemfdCreate("seccomp-bpf", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "seccomp-bpf")
	defer f.Close()
	if err := filter.ExportBPF(f); err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	if len(b) == 0 || len(b)%8 != 0 {
		return nil, fmt.Errorf("libseccomp wrote %d bytes, not a BPF program", len(b))
	}
	return b, nil
}

// flagSupported asks the kernel: seccomp(2) with a flag and no program
// fails with EFAULT where it knows the flag, EINVAL where it does not.
// WAIT_KILLABLE_RECV is only taken with a listener, so it is asked with one.
func flagSupported(flag uint) bool {
	if flag == unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV {
		flag |= unix.SECCOMP_FILTER_FLAG_NEW_LISTENER
	}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uintptr(flag), 0)
	return errno == unix.EFAULT
}

// asClass classes a libseccomp error: one saying the library or kernel is
// too old for what was asked is Unimplemented.
func asClass(err error) error {
	var ve libseccomp.VersionError
	if errors.As(err, &ve) {
		return fmt.Errorf("%w: %w", err, errdefs.ErrNotImplemented)
	}
	return fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
}
