package seccomp

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// maxCached bounds the in-memory cache and the files on disk; past it the
// cache starts over. Hosts run a handful of distinct profiles
// (RuntimeDefault, a few Localhost ones).
const maxCached = 64

// Cache compiles each distinct profile once. A shim daemon has one, shared
// by its containers and their execs. With Dir set, compiled programs are
// also kept on disk for the other shims of the host: most containers get a
// shim of their own, and compiling containerd's default profile takes
// libseccomp some 20 ms.
type Cache struct {
	// Dir holds the programs on disk: a root-only directory on a tmpfs
	// (what is there is loaded into containers as it is), or "" for none.
	Dir string

	mu       sync.Mutex
	progs    map[[sha256.Size]byte]*Program
	identity string // of the compiler: libseccomp and this binary
}

// Compile returns the program of profile, from the cache when a profile
// with the same digest was compiled before. The program is shared: callers
// must not change it.
func (c *Cache) Compile(profile *specs.LinuxSeccomp) (*Program, error) {
	data, err := json.Marshal(profile)
	if err != nil {
		return nil, fmt.Errorf("linux.seccomp: %w", err)
	}
	c.mu.Lock()
	if c.identity == "" {
		c.identity = compilerIdentity()
	}
	// The program depends on the profile, and on the code that compiles
	// it and the kernel's flags: a digest over both keys it.
	key := sha256.Sum256(append(append(data, 0), c.identity...))
	p, ok := c.progs[key]
	c.mu.Unlock()
	if ok {
		return p, nil
	}
	if p = c.load(key); p == nil {
		// Compiled outside the lock: two first uses of one profile may
		// both compile, which costs time, never correctness.
		if p, err = Compile(profile); err != nil {
			return nil, err
		}
		c.store(key, p)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.progs == nil || len(c.progs) >= maxCached {
		c.progs = map[[sha256.Size]byte]*Program{}
	}
	c.progs[key] = p
	return p, nil
}

func (c *Cache) path(key [sha256.Size]byte) string {
	return filepath.Join(c.Dir, hex.EncodeToString(key[:])+".json")
}

// load reads a program another shim compiled, or returns nil. A program
// is loaded into containers as it is, so only one root alone could have
// written is taken: in a root-only directory, owned by root, written by
// root alone, not through a symlink.
func (c *Cache) load(key [sha256.Size]byte) *Program {
	if c.Dir == "" || !rootOnly(c.Dir) {
		return nil
	}
	f, err := os.OpenFile(c.path(key), os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Uid != 0 || st.Mode&0o022 != 0 {
		return nil
	}
	data, err := io.ReadAll(io.LimitReader(f, 8*maxInstructions*2))
	if err != nil {
		return nil
	}
	var p Program
	if json.Unmarshal(data, &p) != nil || p.CheckShape() != nil {
		return nil
	}
	return &p
}

// store keeps the program on disk, written whole or not at all; a cache
// that cannot be written only costs the next shim a compile.
func (c *Cache) store(key [sha256.Size]byte, p *Program) {
	if c.Dir == "" {
		return
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil || !rootOnly(c.Dir) {
		return
	}
	if entries, err := os.ReadDir(c.Dir); err == nil && len(entries) >= maxCached {
		for _, e := range entries {
			os.Remove(filepath.Join(c.Dir, e.Name()))
		}
	}
	data, err := json.Marshal(p)
	if err != nil {
		return
	}
	f, err := os.CreateTemp(c.Dir, ".tmp-*")
	if err != nil {
		return
	}
	_, werr := f.Write(data)
	if cerr := f.Close(); werr != nil || cerr != nil {
		os.Remove(f.Name())
		return
	}
	if os.Rename(f.Name(), c.path(key)) != nil {
		os.Remove(f.Name())
	}
}

// rootOnly says whether dir, and each directory above it, is a real
// directory owned by root that no one else may write to.
func rootOnly(dir string) bool {
	dir = filepath.Clean(dir)
	for d := dir; ; d = filepath.Dir(d) {
		var st unix.Stat_t
		if unix.Lstat(d, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != 0 {
			return false
		}
		// The directory itself is root's alone; above it, sticky
		// world-writable directories (/tmp) cannot have it renamed away.
		if d == dir && st.Mode&0o077 != 0 {
			return false
		}
		if d != dir && st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0 {
			return false
		}
		if d == "/" || d == "." {
			return true
		}
	}
}

// compilerIdentity names what a program depends on besides its profile:
// the libseccomp that compiled it and the binary that called it (a rebuild
// may compile differently), and the filter flags this kernel supports.
func compilerIdentity() string {
	id := "libseccomp " + LibraryVersion()
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/exe", &st); err == nil {
		id += fmt.Sprintf(" binary %d:%d:%d:%d.%d", st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec)
	}
	for _, name := range supportedProfileFlags() {
		id += " " + name
	}
	return id
}
