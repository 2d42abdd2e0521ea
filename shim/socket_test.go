package shim

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestSocketPath(t *testing.T) {
	const addr = "/run/containerd/containerd.sock"
	sum := sha256.Sum256([]byte(RuntimeName + ":" + addr + "/default/c1"))
	want := "/run/containerd/s/" + hex.EncodeToString(sum[:])
	// What runc-v2 names its socket for the same group: never ours.
	runcSum := sha256.Sum256([]byte(addr + "/default/c1"))
	if runc := "/run/containerd/s/" + hex.EncodeToString(runcSum[:]); runc == want {
		t.Fatal("our socket name is runc-v2's")
	}

	tests := []struct {
		name      string
		dir, addr string
		ns, group string
		want      string
		wantErr   error
	}{
		{name: "named apart from runc-v2", dir: defaultSocketDir, addr: addr, ns: "default", group: "c1", want: want},
		{name: "other id differs", dir: defaultSocketDir, addr: addr, ns: "default", group: "c2"},
		{name: "too long", dir: "/" + strings.Repeat("d", 60), addr: addr, ns: "default", group: "c1", wantErr: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := socketPath(tt.dir, tt.addr, tt.ns, tt.group)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			again, _ := socketPath(tt.dir, tt.addr, tt.ns, tt.group)
			if got != again {
				t.Fatalf("not deterministic: %q then %q", got, again)
			}
			if len(got) >= socketPathMaxBytes {
				t.Fatalf("%q is %d bytes", got, len(got))
			}
			if tt.want != "" && got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			if tt.want == "" && got == want {
				t.Fatalf("%s/%s collides with c1", tt.ns, tt.group)
			}
		})
	}
}

func TestListenSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "sock")

	l, err := listenSocket(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := listenSocket(path); !errors.Is(err, errShimRunning) {
		t.Fatalf("second listen on a live socket: err = %v, want errShimRunning", err)
	}
	// Our listener never unlinks: the daemon owns the path.
	l.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("socket removed by Close: %v", err)
	}
	// Now stale: nobody accepts, so it is replaced.
	l2, err := listenSocket(path)
	if err != nil {
		t.Fatalf("listen on a stale socket: %v", err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial replaced socket: %v", err)
	}
	c.Close()
	l2.Close()
	if err := removeStaleSocket(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale socket still there: %v", err)
	}
}
