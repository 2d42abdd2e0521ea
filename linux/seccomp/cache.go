package seccomp

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// maxCached bounds the cache; past it the cache starts over. Hosts run a
// handful of distinct profiles (RuntimeDefault, a few Localhost ones).
const maxCached = 64

// Cache compiles each distinct profile once. A shim daemon has one, shared
// by its containers and their execs.
type Cache struct {
	mu    sync.Mutex
	progs map[[sha256.Size]byte]*Program
}

// Compile returns the program of profile, from the cache when a profile
// with the same digest was compiled before. The program is shared: callers
// must not change it.
func (c *Cache) Compile(profile *specs.LinuxSeccomp) (*Program, error) {
	data, err := json.Marshal(profile)
	if err != nil {
		return nil, fmt.Errorf("linux.seccomp: %w", err)
	}
	key := sha256.Sum256(data)
	c.mu.Lock()
	p, ok := c.progs[key]
	c.mu.Unlock()
	if ok {
		return p, nil
	}
	// Compiled outside the lock: two first uses of one profile may both
	// compile, which costs time, never correctness.
	p, err = Compile(profile)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.progs == nil || len(c.progs) >= maxCached {
		c.progs = map[[sha256.Size]byte]*Program{}
	}
	c.progs[key] = p
	return p, nil
}
