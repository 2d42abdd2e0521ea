package initproc

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// capabilityNames lists capabilities by number, up to CAP_CHECKPOINT_RESTORE.
var capabilityNames = [...]string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
	"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
	"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// CapabilityNames lists the capabilities this runtime knows, by number.
func CapabilityNames() []string { return slices.Clone(capabilityNames[:]) }

// CapabilityFromName maps "CAP_SYS_ADMIN" to 21 and so on.
func CapabilityFromName(name string) (int, error) {
	for i, n := range capabilityNames {
		if n == name {
			return i, nil
		}
	}
	return 0, fmt.Errorf("unknown capability %q: %w", name, errdefs.ErrInvalidArgument)
}

// capSet is a capability bit set as the kernel's two 32-bit words.
type capSet [2]uint32

func (s *capSet) add(c int)            { s[c/32] |= 1 << (c % 32) }
func (s capSet) has(c int) bool        { return s[c/32]&(1<<(c%32)) != 0 }
func (s capSet) minus(o capSet) capSet { return capSet{s[0] &^ o[0], s[1] &^ o[1]} }

func (s capSet) names() string {
	var out []string
	for c, n := range capabilityNames {
		if s.has(c) {
			out = append(out, n)
		}
	}
	return strings.Join(out, ",")
}

type processCaps struct {
	bounding, effective, permitted, inheritable capSet
	ambient                                     []int
}

// parseCaps validates every name before anything changes. Capabilities this
// kernel does not know (above cap_last_cap) are left out, as runc does.
func parseCaps(c *specs.LinuxCapabilities, last int) (processCaps, error) {
	var pc processCaps
	set := func(dst *capSet, names []string, field string) error {
		for _, n := range names {
			v, err := CapabilityFromName(n)
			if err != nil {
				return fmt.Errorf("process.capabilities.%s: %w", field, err)
			}
			if v <= last {
				dst.add(v)
			}
		}
		return nil
	}
	for _, f := range []struct {
		dst   *capSet
		names []string
		field string
	}{
		{&pc.bounding, c.Bounding, "bounding"},
		{&pc.effective, c.Effective, "effective"},
		{&pc.permitted, c.Permitted, "permitted"},
		{&pc.inheritable, c.Inheritable, "inheritable"},
	} {
		if err := set(f.dst, f.names, f.field); err != nil {
			return pc, err
		}
	}
	var ambient capSet
	if err := set(&ambient, c.Ambient, "ambient"); err != nil {
		return pc, err
	}
	for i := 0; i <= last; i++ {
		if ambient.has(i) {
			pc.ambient = append(pc.ambient, i)
		}
	}
	return pc, nil
}

// LastCap is the highest capability the running kernel knows, asked of
// the kernel: its bounding set refuses numbers it does not know. Not
// /proc/sys/kernel/cap_last_cap: an exec reads the container's /proc,
// which could say a lower number and so keep capabilities above it in the
// bounding set.
func LastCap() int {
	last := 0
	for c := 0; c < 64; c++ {
		if _, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0); err != nil {
			break
		}
		last = c
	}
	return last
}

// finalizeIdentity is init's last step before execve: bounding set, user and
// groups, capabilities, no_new_privs and umask.
//
// Capabilities and no_new_privs belong to a thread, not a process, so the
// calling goroutine is locked to its thread for good: the caller must execve
// from this same goroutine.
func finalizeIdentity(p *specs.Process) error {
	if p == nil {
		return fmt.Errorf("finalize identity: no process: %w", errdefs.ErrInvalidArgument)
	}
	runtime.LockOSThread()

	var caps *processCaps
	last := 0
	if p.Capabilities != nil {
		last = LastCap()
		pc, err := parseCaps(p.Capabilities, last)
		if err != nil {
			return err
		}
		caps = &pc
	}
	if p.User.Umask != nil {
		unix.Umask(int(*p.User.Umask))
	}
	if caps != nil {
		for c := 0; c <= last; c++ {
			if caps.bounding.has(c) {
				continue
			}
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("drop %s from the bounding set: %w", capabilityNames[c], err)
			}
		}
	}
	// Keep the permitted set across the switch away from uid 0; capset below
	// then trims it to what the spec asks for.
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_KEEPCAPS): %w", err)
	}
	if err := switchUser(p.User); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_KEEPCAPS): %w", err)
	}
	if caps != nil {
		if err := setCaps(*caps); err != nil {
			return err
		}
	}
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
		}
	}
	return nil
}

// switchUser sets groups, gid and uid. The syscall package applies each to
// every thread of the process.
func switchUser(u specs.User) error {
	gids := make([]int, len(u.AdditionalGids))
	for i, g := range u.AdditionalGids {
		gids[i] = int(g)
	}
	// An empty list is still set: init must not pass on the shim's groups.
	if err := syscall.Setgroups(gids); err != nil {
		if !(len(gids) == 0 && errors.Is(err, syscall.EPERM) && setgroupsDenied()) {
			return fmt.Errorf("setgroups %v: %w", u.AdditionalGids, err)
		}
	}
	if err := syscall.Setgid(int(u.GID)); err != nil {
		return fmt.Errorf("setgid %d: %w", u.GID, err)
	}
	if err := syscall.Setuid(int(u.UID)); err != nil {
		return fmt.Errorf("setuid %d: %w", u.UID, err)
	}
	return nil
}

// setgroupsDenied is true in a user namespace whose setgroups is "deny",
// where groups cannot be changed and there are none to leak.
func setgroupsDenied() bool {
	b, err := os.ReadFile("/proc/self/setgroups")
	return err == nil && strings.TrimSpace(string(b)) == "deny"
}

func setCaps(pc processCaps) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	for i := range data {
		data[i] = unix.CapUserData{
			Effective:   pc.effective[i],
			Permitted:   pc.permitted[i],
			Inheritable: pc.inheritable[i],
		}
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		// What we hold is read only to explain the failure (a failed
		// capset changes nothing).
		var cur [2]unix.CapUserData
		if gerr := unix.Capget(&hdr, &cur[0]); gerr != nil {
			return fmt.Errorf("capset: %w", err)
		}
		if missing := pc.permitted.minus(capSet{cur[0].Permitted, cur[1].Permitted}); missing != (capSet{}) {
			return fmt.Errorf("capset: %w (the runtime itself lacks %s)", err, missing.names())
		}
		if extra := pc.effective.minus(pc.permitted); extra != (capSet{}) {
			return fmt.Errorf("capset: %w (effective %s not in the permitted set)", err, extra.names())
		}
		return fmt.Errorf("capset: %w", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	for _, c := range pc.ambient {
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(c), 0, 0); err != nil {
			return fmt.Errorf("raise ambient capability %s (it must be permitted and inheritable): %w", capabilityNames[c], err)
		}
	}
	return nil
}
