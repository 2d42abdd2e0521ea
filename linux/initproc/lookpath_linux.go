package initproc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
)

// lookPathError reads like os/exec's errors (what runc reports), and also
// matches an errdefs class.
type lookPathError struct {
	name  string
	err   error
	class error
}

func (e *lookPathError) Error() string { return fmt.Sprintf("exec: %q: %v", e.name, e.err) }

func (e *lookPathError) Unwrap() []error {
	if e.class == nil {
		return []error{e.err}
	}
	return []error{e.class, e.err}
}

var errNotInPath = errors.New("executable file not found in $PATH")

// lookPath resolves args[0] inside the container: it runs after the pivot
// and the chdir to the process cwd. A name with a slash is checked as given
// and returned as given; otherwise PATH from env is searched.
func lookPath(args []string, env []string) (string, error) {
	if len(args) == 0 || args[0] == "" {
		return "", fmt.Errorf("process.args is empty: %w", errdefs.ErrInvalidArgument)
	}
	name := args[0]
	if strings.Contains(name, "/") {
		if err := checkExecutable(name); err != nil {
			return "", classifyLookPath(name, err)
		}
		return name, nil
	}
	for _, p := range PathCandidates(name, env) {
		if checkExecutable(p) == nil {
			return p, nil
		}
	}
	return "", &lookPathError{name: name, err: errNotInPath, class: errdefs.ErrNotFound}
}

// PathCandidates are the files lookPath tries, in order, for a name
// without a slash: name in each directory of the PATH of env. No PATH
// means no search, as with runc: a spec without PATH (ctr run --rootfs)
// must name its binary by path.
func PathCandidates(name string, env []string) []string {
	pathEnv, _ := lookupEnv(env, "PATH")
	var out []string
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		out = append(out, filepath.Join(dir, name))
	}
	return out
}

// classifyLookPath attaches the class a caller cares about: a missing file is
// NotFound; a directory or non-executable file is a bad argument.
func classifyLookPath(name string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return &lookPathError{name: name, err: err, class: errdefs.ErrNotFound}
	}
	return &lookPathError{name: name, err: err, class: errdefs.ErrInvalidArgument}
}

// checkExecutable errors like os/exec: the stat error as is, "is a
// directory", or "permission denied" when no execute bit is set. The check is
// by mode bits because init still runs as root here and access(2) would pass
// for root whatever the user the process will become.
func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return syscall.EISDIR
	}
	if fi.Mode()&0o111 == 0 {
		return fs.ErrPermission
	}
	return nil
}

// lookupEnv finds key in a KEY=value list; the last one wins, as for
// os/exec.
func lookupEnv(env []string, key string) (string, bool) {
	val, found := "", false
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			val, found = v, true
		}
	}
	return val, found
}
