package integration

import (
	"context"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// BusyboxPath is where busybox-static installs its binary on Debian.
const BusyboxPath = "/bin/busybox"

// BuildBusyboxRootfs fills dir (created if missing) with a minimal root
// filesystem: a static busybox with a symlink per applet in /bin, passwd
// and group with root and nobody, and the empty directories a runtime
// mounts over. Containers get no PATH from ctr --rootfs, so tests use
// absolute paths such as /bin/sh.
func BuildBusyboxRootfs(ctx context.Context, dir string) error {
	if err := checkStatic(BusyboxPath); err != nil {
		return err
	}
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "run", "root", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("rootfs %s: %w", dir, err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o777|fs.ModeSticky); err != nil {
		return fmt.Errorf("rootfs %s: chmod tmp: %w", dir, err)
	}
	if err := copyFile(BusyboxPath, filepath.Join(dir, "bin", "busybox"), 0o755); err != nil {
		return fmt.Errorf("rootfs %s: %w", dir, err)
	}
	res := Run(ctx, nil, nil, BusyboxPath, "--list")
	if res.ExitCode != 0 {
		return fmt.Errorf("rootfs %s: list busybox applets: %s", dir, res)
	}
	for _, applet := range strings.Fields(res.Stdout) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil && !os.IsExist(err) {
			return fmt.Errorf("rootfs %s: applet %s: %w", dir, applet, err)
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("rootfs %s: %w", dir, err)
		}
	}
	return nil
}

// checkStatic refuses a dynamically linked busybox: the rootfs has no libc.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("busybox %s: %w (install busybox-static)", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("busybox %s is dynamically linked; install busybox-static", path)
		}
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	return nil
}

// Fingerprint lists every path under dir with its type, mode and size, so
// a later call can tell whether a container changed a shared rootfs.
func Fingerprint(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		size := info.Size()
		if info.IsDir() {
			size = 0
		}
		out = append(out, fmt.Sprintf("%s %v %d", rel, info.Mode(), size))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("fingerprint %s: %w", dir, err)
	}
	sort.Strings(out)
	return out, nil
}

// DiffFingerprints describes what changed between two fingerprints.
func DiffFingerprints(before, after []string) []string {
	seen := make(map[string]bool, len(before))
	for _, s := range before {
		seen[s] = true
	}
	now := make(map[string]bool, len(after))
	var diff []string
	for _, s := range after {
		now[s] = true
		if !seen[s] {
			diff = append(diff, "+ "+s)
		}
	}
	for _, s := range before {
		if !now[s] {
			diff = append(diff, "- "+s)
		}
	}
	return diff
}
