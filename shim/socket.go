package shim

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/minishim/containerd-shim-mini-v2/linux"
	"golang.org/x/sys/unix"
)

const unixScheme = "unix://"

// socketPath names the shim's socket so that the shim for a given
// (containerd, namespace, group) is found again at the same place, as
// containerd's own shims do, but apart from theirs: runc-v2 names its
// socket dir/hex(sha256(address/namespace/group)), and a group annotation
// both runtimes honour would otherwise have either's start take the
// other's live socket for its own shim. So ours hashes the runtime's name
// in front: dir/hex(sha256(RuntimeName ":" address/namespace/group)).
func socketPath(dir, containerdAddress, namespace, group string) (string, error) {
	sum := sha256.Sum256([]byte(RuntimeName + ":" + filepath.Join(containerdAddress, namespace, group)))
	p := filepath.Join(dir, hex.EncodeToString(sum[:]))
	if len(p) >= socketPathMaxBytes {
		return "", fmt.Errorf("socket path %s is %d bytes, unix sockets allow fewer than %d: %w",
			p, len(p), socketPathMaxBytes, errdefs.ErrInvalidArgument)
	}
	return p, nil
}

// groupSocketPath is socketPath of a shim group: a group of the whole
// node (all namespaces) is named without the namespace.
func groupSocketPath(dir, containerdAddress, namespace string, g linux.Group) (string, error) {
	if g.AllNamespaces {
		namespace = ""
	}
	return socketPath(dir, containerdAddress, namespace, g.Name)
}

func socketAddress(path string) string { return unixScheme + path }

// socketPathOf strips the scheme of a unix:// address.
func socketPathOf(address string) string { return strings.TrimPrefix(address, unixScheme) }

// canConnect says whether something accepts connections at path.
func canConnect(path string) bool {
	c, err := net.DialTimeout("unix", path, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// errShimRunning means a live shim already serves the socket.
var errShimRunning = fmt.Errorf("shim already serves this socket: %w", errdefs.ErrAlreadyExists)

// listenSocket creates the socket at path, owner-only. A socket left behind
// by a dead shim is replaced; one a live shim answers on yields
// errShimRunning.
func listenSocket(path string) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return nil, fmt.Errorf("create socket directory %s: %w", filepath.Dir(path), err)
	}
	l, err := listenUnix(path)
	if err == nil {
		return l, nil
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		return nil, err
	}
	err = withSocketDirLock(path, func() error {
		if canConnect(path) {
			return errShimRunning
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove stale socket %s: %w", path, err)
		}
		l, err = listenUnix(path)
		return err
	})
	return l, err
}

// withSocketDirLock runs fn holding an exclusive flock on the directory of
// socket path. Replacing a stale socket (start) and removing one (delete)
// each look and then act; a shared shim's socket can see both at once
// after a crash (a delete per container, a start for the group's next
// one), and delete must not unlink what a new daemon has just bound.
func withSocketDirLock(path string, fn func() error) error {
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer dir.Close()
	if err := unix.Flock(int(dir.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", filepath.Dir(path), err)
	}
	defer unix.Flock(int(dir.Fd()), unix.LOCK_UN)
	return fn()
}

func listenUnix(path string) (*net.UnixListener, error) {
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// The listener's file outlives this process in the daemon; closing our
	// copy must not unlink the path the daemon serves.
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		os.Remove(path)
		return nil, fmt.Errorf("restrict socket %s: %w", path, err)
	}
	return l, nil
}

// removeStaleSocket removes path unless a live shim still answers on it.
func removeStaleSocket(path string) error {
	if path == "" {
		return nil
	}
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return withSocketDirLock(path, func() error {
		if canConnect(path) {
			return nil
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove socket %s: %w", path, err)
		}
		return nil
	})
}
