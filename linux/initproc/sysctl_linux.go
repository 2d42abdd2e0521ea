package initproc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// applySysctl writes each key under /proc/sys. A key already holding its
// value is not written again, so applying the same map twice works even once
// /proc/sys has been made read-only.
func applySysctl(sysctl map[string]string) error {
	keys := make([]string, 0, len(sysctl))
	for k := range sysctl {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := writeSysctl(k, sysctl[k]); err != nil {
			return fmt.Errorf("sysctl %q: %w", k, err)
		}
	}
	return nil
}

func sysctlPath(key string) (string, error) {
	rel := key
	// A key with slashes is already a path, which lets names that contain
	// dots (interfaces like eth0.100) be written.
	if !strings.Contains(key, "/") {
		rel = strings.ReplaceAll(key, ".", "/")
	}
	p := path.Join("/proc/sys", rel)
	if key == "" || !strings.HasPrefix(p, "/proc/sys/") || strings.Contains("/"+rel+"/", "/../") {
		return "", fmt.Errorf("not a sysctl name: %w", errdefs.ErrInvalidArgument)
	}
	return p, nil
}

func writeSysctl(key, value string) error {
	p, err := sysctlPath(key)
	if err != nil {
		return err
	}
	current, err := os.ReadFile(p)
	if err != nil && errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no such sysctl (%s): %w", p, errdefs.ErrInvalidArgument)
	}
	// The kernel prints multi-value keys with tabs; compare field by field.
	if err == nil && strings.Join(strings.Fields(string(current)), " ") == strings.Join(strings.Fields(value), " ") {
		return nil
	}
	if err := os.WriteFile(p, []byte(value), 0); err != nil {
		if errors.Is(err, unix.EINVAL) {
			return withClass(errdefs.ErrInvalidArgument, err)
		}
		return err
	}
	return nil
}

// RlimitResource maps a runtime-spec rlimit name to its resource number.
func RlimitResource(name string) (int, bool) {
	switch name {
	case "RLIMIT_CPU":
		return unix.RLIMIT_CPU, true
	case "RLIMIT_FSIZE":
		return unix.RLIMIT_FSIZE, true
	case "RLIMIT_DATA":
		return unix.RLIMIT_DATA, true
	case "RLIMIT_STACK":
		return unix.RLIMIT_STACK, true
	case "RLIMIT_CORE":
		return unix.RLIMIT_CORE, true
	case "RLIMIT_RSS":
		return unix.RLIMIT_RSS, true
	case "RLIMIT_NPROC":
		return unix.RLIMIT_NPROC, true
	case "RLIMIT_NOFILE":
		return unix.RLIMIT_NOFILE, true
	case "RLIMIT_MEMLOCK":
		return unix.RLIMIT_MEMLOCK, true
	case "RLIMIT_AS":
		return unix.RLIMIT_AS, true
	case "RLIMIT_LOCKS":
		return unix.RLIMIT_LOCKS, true
	case "RLIMIT_SIGPENDING":
		return unix.RLIMIT_SIGPENDING, true
	case "RLIMIT_MSGQUEUE":
		return unix.RLIMIT_MSGQUEUE, true
	case "RLIMIT_NICE":
		return unix.RLIMIT_NICE, true
	case "RLIMIT_RTPRIO":
		return unix.RLIMIT_RTPRIO, true
	case "RLIMIT_RTTIME":
		return unix.RLIMIT_RTTIME, true
	}
	return 0, false
}

// applyRlimits sets each rlimit on the calling process. unix.Prlimit (not
// the raw syscall) is used so that the Go runtime forgets the RLIMIT_NOFILE
// it would otherwise restore at execve.
func applyRlimits(rlimits []specs.POSIXRlimit) error {
	for _, rl := range rlimits {
		res, ok := RlimitResource(rl.Type)
		if !ok {
			return fmt.Errorf("process.rlimits: unknown rlimit %q: %w", rl.Type, errdefs.ErrInvalidArgument)
		}
		want := unix.Rlimit{Cur: rl.Soft, Max: rl.Hard}
		err := unix.Prlimit(0, res, &want, nil)
		if err == nil {
			continue
		}
		// The old limit is read only to explain a refusal.
		var old unix.Rlimit
		raising := errors.Is(err, unix.EPERM) && unix.Prlimit(0, res, nil, &old) == nil && want.Max > old.Max
		switch {
		case raising:
			return fmt.Errorf("setrlimit %s (soft %d, hard %d): %w (raising a hard limit needs CAP_SYS_RESOURCE)",
				rl.Type, rl.Soft, rl.Hard, err)
		case errors.Is(err, unix.EINVAL):
			return fmt.Errorf("setrlimit %s (soft %d, hard %d): %w", rl.Type, rl.Soft, rl.Hard, withClass(errdefs.ErrInvalidArgument, err))
		default:
			return fmt.Errorf("setrlimit %s (soft %d, hard %d): %w", rl.Type, rl.Soft, rl.Hard, err)
		}
	}
	return nil
}

// ApplyOOMScoreAdj sets process pid's oom_score_adj when adj is non-nil.
// The shim sets it on a container process before its preamble runs, as
// runc does: a process in a user namespace of its own could no longer
// lower it.
func ApplyOOMScoreAdj(pid int, adj *int) error {
	if adj == nil {
		return nil
	}
	file := "/proc/" + strconv.Itoa(pid) + "/oom_score_adj"
	err := os.WriteFile(file, []byte(strconv.Itoa(*adj)), 0)
	if err == nil {
		return nil
	}
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		current := "unknown"
		if b, rerr := os.ReadFile(file); rerr == nil {
			current = strings.TrimSpace(string(b))
		}
		return fmt.Errorf("set oom_score_adj to %d: %w (lowering oom_score_adj needs CAP_SYS_RESOURCE; current value %s)", *adj, err, current)
	}
	if errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("set oom_score_adj to %d (allowed: -1000..1000): %w", *adj, withClass(errdefs.ErrInvalidArgument, err))
	}
	return fmt.Errorf("set oom_score_adj to %d: %w", *adj, err)
}
