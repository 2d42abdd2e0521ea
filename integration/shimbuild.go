package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// ModulePath is the Go module of this repository.
const ModulePath = "github.com/minishim/containerd-shim-mini-v2"

// RepoRoot finds the repository root by walking up from the working
// directory to the go.mod of ModulePath.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repo root: %w", err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(data, []byte("module "+ModulePath+"\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("find repo root: no go.mod of %s above the working directory", ModulePath)
		}
		dir = parent
	}
}

// BuildShim builds containerd-shim-mini-v2 (cgo on) into outDir and returns
// its path. go's build cache keeps repeated builds cheap.
func BuildShim(ctx context.Context, repoRoot, outDir string) (string, error) {
	out := filepath.Join(outDir, ShimBinaryName(MiniRuntime))
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := Run(ctx, nil, []string{"CGO_ENABLED=1"}, "go", "-C", repoRoot, "build", "-o", out, "./cmd/containerd-shim-mini-v2")
	if cmd.ExitCode != 0 {
		return "", fmt.Errorf("build %s: %s", out, cmd)
	}
	return out, nil
}

// ShimDir is the directory to put first on containerd's PATH: the one of
// shim (a built containerd-shim-mini-v2) when given, else tmp after building
// the shim into it.
func ShimDir(ctx context.Context, shim, tmp string) (string, error) {
	if shim != "" {
		abs, err := filepath.Abs(shim)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("shim: %w", err)
		}
		return filepath.Dir(abs), nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	if _, err := BuildShim(ctx, root, tmp); err != nil {
		return "", err
	}
	return tmp, nil
}

// PrepareShim returns the directory to put first on containerd's PATH for
// the shim under test: the one of MINI_SHIM_BIN when set (it must carry the
// name containerd looks up), else dir/bin after building the shim into it.
func PrepareShim(ctx context.Context, dir string) (string, error) {
	if bin := os.Getenv("MINI_SHIM_BIN"); bin != "" {
		if filepath.Base(bin) != ShimBinaryName(MiniRuntime) {
			return "", fmt.Errorf("MINI_SHIM_BIN=%s: containerd looks the shim up as %s", bin, ShimBinaryName(MiniRuntime))
		}
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("MINI_SHIM_BIN: %w", err)
		}
		abs, err := filepath.Abs(bin)
		return filepath.Dir(abs), err
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	binDir := filepath.Join(dir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", err
	}
	if _, err := BuildShim(ctx, root, binDir); err != nil {
		return "", err
	}
	return binDir, nil
}
