package linux

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minishim/containerd-shim-mini-v2/linux/initproc"
)

// Both ways of sealing the binary give the binary itself, which takes no
// write through its /proc link (how a container would reach it), and is
// not the file on the host.
func TestSealedBinary(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	want, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		seal   func() (*os.File, error)
		prefix string // of the /proc link's target
	}{
		{name: "overlay", seal: func() (*os.File, error) { return overlayBinary("/proc/self/exe") }, prefix: "/"},
		{name: "memfd", seal: func() (*os.File, error) {
			self, err := os.Open("/proc/self/exe")
			if err != nil {
				return nil, err
			}
			defer self.Close()
			return memfdBinary(self)
		}, prefix: "/memfd:"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f, err := tt.seal()
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := io.ReadAll(io.NewSectionReader(f, 0, int64(len(want))+1))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("read %d bytes (%v), want the %d bytes of the binary", len(got), err, len(want))
			}
			link := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
			target, err := os.Readlink(link)
			if err != nil || target == exe || !strings.HasPrefix(target, tt.prefix) {
				t.Errorf("%s -> %q (%v): want a file apart from %s", link, target, err, exe)
			}
			// The overlay refuses the open (read-only); a sealed memfd
			// opens, and refuses the write.
			if w, err := os.OpenFile(link, os.O_WRONLY, 0); err == nil {
				_, werr := w.WriteAt([]byte{0}, 0)
				w.Close()
				if werr == nil {
					t.Errorf("%s takes a write", link)
				}
			}
		})
	}
}

// The init binary is taken from beside the shim's only when it is a
// regular file that can run.
func TestInitBinaryBeside(t *testing.T) {
	for _, tt := range []struct {
		name  string
		make  func(path string) error
		found bool
	}{
		{"absent", func(string) error { return nil }, false},
		{"executable", func(p string) error { return os.WriteFile(p, nil, 0o755) }, true},
		{"not executable", func(p string) error { return os.WriteFile(p, nil, 0o644) }, false},
		{"directory", func(p string) error { return os.Mkdir(p, 0o755) }, false},
		{"group-writable", func(p string) error {
			if err := os.WriteFile(p, nil, 0o755); err != nil {
				return err
			}
			return os.Chmod(p, 0o775)
		}, false},
		{"another user's", func(p string) error {
			if err := os.WriteFile(p, nil, 0o755); err != nil {
				return err
			}
			return os.Chown(p, os.Geteuid()+1, -1)
		}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := tt.make(filepath.Join(dir, initproc.BinaryName)); err != nil {
				t.Fatal(err)
			}
			got, ok := initBinaryBeside(filepath.Join(dir, "containerd-shim-mini-v2"))
			if ok != tt.found || (ok && got != filepath.Join(dir, initproc.BinaryName)) {
				t.Errorf("initBinaryBeside = %q, %v; want found %v", got, ok, tt.found)
			}
		})
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, initproc.BinaryName), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if got, ok := initBinaryBeside(filepath.Join(dir, "containerd-shim-mini-v2") + " (deleted)"); ok {
		t.Errorf("a deleted shim binary's neighbour %q was taken", got)
	}
}

// The sealed binary sits above every descriptor os/exec lays out in a
// child, so a child given ExtraFiles still execs it: at fd 3 it would be
// replaced by the first of them (EACCES), as a shim whose fd 3 was free
// once saw.
func TestSealedBinaryStartsWithExtraFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	f, err := sealedBinary("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Fd() < minExecFd {
		t.Errorf("sealed binary at fd %d, below %d", f.Fd(), minExecFd)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	cmd := exec.Command(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), "-test.run=^$")
	cmd.ExtraFiles = []*os.File{r, w, r, w}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("start from the sealed binary with ExtraFiles: %v\n%s", err, out)
	}
}
