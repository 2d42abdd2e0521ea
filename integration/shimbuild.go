package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/minishim/containerd-shim-mini-v2/linux/initproc"
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

// ShimBuildTags and ShimLDFlags are what the Makefile builds the shim
// with: no gRPC, and static.
const (
	ShimBuildTags = "no_grpc,netgo,osusergo"
	ShimLDFlags   = "-extldflags -static"
)

// InitBinaryName is the binary the shim starts container processes from
// when it sits beside it.
const InitBinaryName = initproc.BinaryName

// BuildShim builds containerd-shim-mini-v2 and its init binary (cgo on)
// into outDir and returns the shim's path. go's build cache keeps repeated
// builds cheap.
func BuildShim(ctx context.Context, repoRoot, outDir string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	for _, name := range []string{ShimBinaryName(MiniRuntime), InitBinaryName} {
		out := filepath.Join(outDir, name)
		cmd := Run(ctx, nil, []string{"CGO_ENABLED=1"}, "go", "-C", repoRoot, "build", "-tags", ShimBuildTags, "-ldflags", ShimLDFlags, "-o", out, "./cmd/"+name)
		if cmd.ExitCode != 0 {
			return "", fmt.Errorf("build %s: %s", out, cmd)
		}
	}
	return filepath.Join(outDir, ShimBinaryName(MiniRuntime)), nil
}

// ShimDir is the directory to put first on containerd's PATH: the one of
// shim (a built binary, which must carry the name containerd looks up) when
// given, else outDir after building the shim into it.
func ShimDir(ctx context.Context, shim, outDir string) (string, error) {
	if shim != "" {
		if filepath.Base(shim) != ShimBinaryName(MiniRuntime) {
			return "", fmt.Errorf("shim %s: containerd looks the shim up as %s", shim, ShimBinaryName(MiniRuntime))
		}
		if _, err := os.Stat(shim); err != nil {
			return "", fmt.Errorf("shim: %w", err)
		}
		abs, err := filepath.Abs(shim)
		return filepath.Dir(abs), err
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", err
	}
	if _, err := BuildShim(ctx, root, outDir); err != nil {
		return "", err
	}
	return outDir, nil
}

// PrepareShim is ShimDir for the suites: the shim of MINI_SHIM_BIN, else
// one built into dir/bin.
func PrepareShim(ctx context.Context, dir string) (string, error) {
	bin := os.Getenv("MINI_SHIM_BIN")
	shimDir, err := ShimDir(ctx, bin, filepath.Join(dir, "bin"))
	if err != nil && bin != "" {
		return "", fmt.Errorf("MINI_SHIM_BIN: %w", err)
	}
	return shimDir, err
}
