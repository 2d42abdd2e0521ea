package initproc

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
)

func TestLookPath(t *testing.T) {
	base := t.TempDir()
	bin1, bin2, empty := filepath.Join(base, "bin1"), filepath.Join(base, "bin2"), filepath.Join(base, "empty")
	for _, d := range []string{bin1, bin2, empty, filepath.Join(bin2, "adir")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{
		{filepath.Join(bin1, "tool"), 0o755},
		{filepath.Join(bin1, "both"), 0o755},
		{filepath.Join(bin2, "both"), 0o644},
		{filepath.Join(bin2, "noexec"), 0o644},
		{filepath.Join(bin2, "only2"), 0o700},
	} {
		if err := os.WriteFile(f.path, nil, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	relTool, err := filepath.Rel(cwd, filepath.Join(bin1, "tool"))
	if err != nil {
		t.Fatal(err)
	}
	path := "PATH=" + bin2 + ":" + bin1

	for _, tc := range []struct {
		name    string
		args    []string
		env     []string
		want    string
		wantErr string
		class   func(error) bool
	}{
		{"search", []string{"tool"}, []string{path}, filepath.Join(bin1, "tool"), "", nil},
		{"skips non-executable", []string{"both"}, []string{path}, filepath.Join(bin1, "both"), "", nil},
		{"first dir wins", []string{"only2"}, []string{path}, filepath.Join(bin2, "only2"), "", nil},
		{"last PATH wins", []string{"tool"}, []string{"PATH=" + empty, "HOME=/", "PATH=" + bin1}, filepath.Join(bin1, "tool"), "", nil},
		{"no PATH, no search (as runc)", []string{"sh"}, []string{"HOME=/"}, "",
			`exec: "sh": executable file not found in $PATH`, errdefs.IsNotFound},
		{"absolute", []string{filepath.Join(bin1, "tool"), "-x"}, nil, filepath.Join(bin1, "tool"), "", nil},
		{"relative to cwd", []string{relTool}, nil, relTool, "", nil},
		{"not in PATH", []string{"nope"}, []string{path}, "",
			`exec: "nope": executable file not found in $PATH`, errdefs.IsNotFound},
		{"directory in PATH is skipped", []string{"adir"}, []string{path}, "",
			`exec: "adir": executable file not found in $PATH`, errdefs.IsNotFound},
		{"missing absolute", []string{"/bin/nope"}, []string{path}, "",
			`exec: "/bin/nope": stat /bin/nope: no such file or directory`, errdefs.IsNotFound},
		{"directory", []string{"/etc"}, nil, "",
			`exec: "/etc": is a directory`, errdefs.IsInvalidArgument},
		{"not executable", []string{filepath.Join(bin2, "noexec")}, nil, "",
			`exec: "` + filepath.Join(bin2, "noexec") + `": permission denied`, errdefs.IsInvalidArgument},
		{"no args", nil, nil, "", "process.args is empty: invalid argument", errdefs.IsInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := lookPath(tc.args, tc.env)
			if tc.wantErr == "" {
				if err != nil || got != tc.want {
					t.Fatalf("lookPath(%q) = %q, %v; want %q", tc.args, got, err, tc.want)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr || !tc.class(err) {
				t.Fatalf("lookPath(%q) = %q, %v; want error %q of the right class", tc.args, got, err, tc.wantErr)
			}
		})
	}

	_, err = lookPath([]string{"/bin/nope"}, nil)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file error %v does not match fs.ErrNotExist", err)
	}
}
