package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Case 9: bundles ctr cannot produce, sent straight to our shim the way
// containerd starts and calls it: Create must fail with the errdefs class
// a caller can act on and name config.json, and Shutdown must then end the
// shim and remove its socket. Only for our shim: runc's needs runc options.
// MINI_TEST_DIRECT_SHIM=/path/to/containerd-shim-X-vN drives another shim
// binary instead, to check the harness itself.
func TestShimDirect(t *testing.T) {
	bin := directShimBinary(t)
	cases := []struct {
		name    string
		config  []byte // nil: no config.json at all
		isClass func(error) bool
		class   string
	}{
		{name: "no-config", isClass: errdefs.IsNotFound, class: "NotFound"},
		{name: "garbage-config", config: []byte("this is {not json"), isClass: errdefs.IsInvalidArgument, class: "InvalidArgument"},
	}
	for _, d := range suite.daemons {
		t.Run(d.version.Name, func(t *testing.T) {
			t.Parallel()
			if d.err != nil {
				t.Fatalf("containerd %s unusable: %v", d.version.Name, d.err)
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					s := startShimDirect(t, d, bin, "direct-"+c.name)
					// containerd writes config.json before `start` (runc's
					// shim reads it there); break it only for Create.
					cfg := filepath.Join(s.bundle, "config.json")
					if err := os.Remove(cfg); err != nil {
						t.Fatal(err)
					}
					if c.config != nil {
						if err := os.WriteFile(cfg, c.config, 0o644); err != nil {
							t.Fatal(err)
						}
					}
					err := s.create()
					if err == nil {
						t.Fatalf("Create with bundle %s (%s) succeeded", s.bundle, c.name)
					}
					native := errgrpc.ToNative(err)
					if !c.isClass(native) {
						t.Errorf("Create error class: want %s, got %v (%T)", c.class, native, native)
					}
					if !strings.Contains(err.Error(), "config.json") {
						t.Errorf("Create error should name config.json: %v", err)
					}
					t.Logf("%s Create says: %v", filepath.Base(bin), err)
					s.shutdown()
				})
			}
		})
	}
}

// directShimBinary is the shim the direct cases drive: ours, unless
// MINI_TEST_DIRECT_SHIM names another. Without ours in MINI_TEST_RUNTIMES
// the case skips.
func directShimBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("MINI_TEST_DIRECT_SHIM"); bin != "" {
		return bin
	}
	if !slices.Contains(suite.Runtimes, MiniRuntime) {
		t.Skipf("only for %s (MINI_TEST_RUNTIMES=%v)", MiniRuntime, suite.Runtimes)
	}
	if suite.ShimErr != nil {
		t.Fatalf("%s not available: %v", MiniRuntime, suite.ShimErr)
	}
	return filepath.Join(suite.ShimDir, ShimBinaryName(MiniRuntime))
}

// directShim is one shim started by hand with a bundle of our making.
type directShim struct {
	t        *testing.T
	d        *daemon
	bin, id  string
	bundle   string
	address  string // unix:///...
	version  int32  // task API version the shim answered with
	conn     net.Conn
	client   *ttrpc.Client
	ctx      context.Context
	logMu    sync.Mutex
	shimLogs []string
}

// startShimDirect runs `<bin> ... start` with cwd = a new bundle, speaking
// the start protocol of d's containerd version: nothing on stdin and a plain
// address back for 1.6, BootstrapParams in and a BootstrapResult out for 2.4.
func startShimDirect(t *testing.T, d *daemon, bin, label string) *directShim {
	t.Helper()
	c := d.c
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	s := &directShim{t: t, d: d, bin: bin, id: fmt.Sprintf("%s-%s-%s", label, d.version.Tag(), RandomSuffix())}
	s.ctx = ttrpc.WithMetadata(ctx, ttrpc.MD{"containerd-namespace-ttrpc": []string{c.Namespace}})
	s.bundle = filepath.Join(suite.Dir, "direct", s.id)
	if err := os.MkdirAll(s.bundle, 0o711); err != nil {
		t.Fatal(err)
	}
	shimName := filepath.Base(bin)
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		leaks := c.WaitNoLeaks(cctx, shimName, s.id, 5*time.Second)
		for _, l := range leaks {
			if l.Kind != "bundle" {
				t.Errorf("leak after %s: %s", s.id, l)
			}
		}
		if t.Failed() {
			s.logMu.Lock()
			t.Logf("shim log:\n%s", strings.Join(s.shimLogs, "\n"))
			s.logMu.Unlock()
		}
		c.ForceCleanup(cctx, shimName, s.id)
		if s.conn != nil {
			s.conn.Close()
		}
		os.RemoveAll(s.bundle)
		cancel()
	})
	s.readLogFifo()
	if err := os.WriteFile(filepath.Join(s.bundle, "config.json"), []byte(`{"ociVersion":"1.2.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}

	args := []string{"-namespace", c.Namespace, "-address", c.Address, "-publish-binary", c.Version.Containerd(), "-id", s.id, "-debug", "start"}
	env := []string{
		"PATH=" + c.PATH,
		"TTRPC_ADDRESS=" + c.TTRPCAddress,
		"GRPC_ADDRESS=" + c.Address,
		"NAMESPACE=" + c.Namespace,
		"GOMAXPROCS=2",
	}
	var stdin []byte
	if d.version.Name != "1.6" {
		env = append(env, "MAX_SHIM_VERSION=2")
		params := &bootapi.BootstrapParams{
			InstanceID:             s.id,
			Namespace:              c.Namespace,
			LogLevel:               bootapi.LogLevel_LOG_LEVEL_DEBUG,
			ContainerdVersion:      "2.4.2",
			ContainerdTtrpcAddress: c.TTRPCAddress,
			ContainerdGrpcAddress:  c.Address,
			ContainerdBinary:       c.Version.Containerd(),
		}
		var err error
		if stdin, err = proto.Marshal(params); err != nil {
			t.Fatal(err)
		}
	}
	// A `start` that hangs fails the case here instead of stalling it.
	sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
	res := RunIn(sctx, s.bundle, bytes.NewReader(stdin), env, bin, args...)
	scancel()
	if res.ExitCode != 0 {
		t.Fatalf("shim start failed:\n%s", res)
	}
	s.parseStartOutput([]byte(res.Stdout))

	conn, err := net.Dial("unix", strings.TrimPrefix(s.address, "unix://"))
	if err != nil {
		t.Fatalf("connect to shim at %s: %v", s.address, err)
	}
	s.conn = conn
	s.client = ttrpc.NewClient(conn)
	return s
}

func (s *directShim) parseStartOutput(out []byte) {
	s.t.Helper()
	if s.d.version.Name == "1.6" {
		// containerd 1.6 reads a plain address.
		s.address, s.version = strings.TrimSpace(string(out)), 2
		if !strings.HasPrefix(s.address, "unix://") {
			s.t.Fatalf("start output for containerd 1.6 should be a unix:// address, got %q", out)
		}
		return
	}
	var r bootapi.BootstrapResult
	if err := proto.Unmarshal(out, &r); err != nil || !strings.HasPrefix(r.GetAddress(), "unix://") {
		s.t.Fatalf("start output for containerd %s should be a BootstrapResult protobuf (err %v), got %q", s.d.version.Name, err, out)
	}
	if r.GetProtocol() != "ttrpc" || (r.GetVersion() != 2 && r.GetVersion() != 3) {
		s.t.Fatalf("BootstrapResult: want protocol ttrpc and version 2 or 3, got %v", &r)
	}
	s.address, s.version = r.GetAddress(), r.GetVersion()
}

// readLogFifo makes bundle/log the way containerd does and keeps what the
// shim writes to it; O_RDWR so neither side blocks on open.
func (s *directShim) readLogFifo() {
	path := filepath.Join(s.bundle, "log")
	if err := syscall.Mkfifo(path, 0o700); err != nil {
		s.t.Fatalf("mkfifo %s: %v", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		s.t.Fatalf("open %s: %v", path, err)
	}
	s.t.Cleanup(func() { f.Close() })
	go func() {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			s.logMu.Lock()
			s.shimLogs = append(s.shimLogs, sc.Text())
			s.logMu.Unlock()
		}
	}()
}

// callTimeout is how long a Task request of the direct cases may take.
const callTimeout = 30 * time.Second

// call sends one Task request with the API version the shim answered
// with, failing after timeout; v2's and v3's messages are the same on the
// wire.
func (s *directShim) call(timeout time.Duration, method string, req, resp any) error {
	service := "containerd.task.v2.Task"
	if s.version == 3 {
		service = "containerd.task.v3.Task"
	}
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	return s.client.Call(ctx, service, method, req, resp)
}

// connectionGone says whether err is the end of the shim's connection.
func connectionGone(err error) bool {
	return errors.Is(err, ttrpc.ErrClosed) || strings.Contains(err.Error(), "closed") || strings.Contains(err.Error(), "EOF") ||
		strings.Contains(err.Error(), "connection reset")
}

func (s *directShim) create() error {
	return s.call(callTimeout, "Create", &taskv3.CreateTaskRequest{ID: s.id, Bundle: s.bundle}, &taskv3.CreateTaskResponse{})
}

// requestAfterShutdown: a request on the connection of a shim that shut
// down fails at once, with the connection's error, and does not hang.
func (s *directShim) requestAfterShutdown() {
	s.t.Helper()
	err := s.call(5*time.Second, "State", &taskv3.StateRequest{ID: s.id}, &taskv3.StateResponse{})
	switch {
	case err == nil:
		s.t.Errorf("State after Shutdown succeeded")
	case errors.Is(err, context.DeadlineExceeded):
		s.t.Errorf("State after Shutdown hung: %v", err)
	}
}

// shutdown asks the shim to exit and checks that it did, socket removed.
func (s *directShim) shutdown() {
	s.t.Helper()
	err := s.call(callTimeout, "Shutdown", &taskv3.ShutdownRequest{ID: s.id}, &emptypb.Empty{})
	// The shim may close the connection before the reply gets out.
	if err != nil && !connectionGone(err) {
		s.t.Errorf("Shutdown: %v", err)
	}
	socket := strings.TrimPrefix(s.address, "unix://")
	shimName := filepath.Base(s.bin)
	deadline := time.Now().Add(5 * time.Second)
	for {
		procs := ProcessesMatching(func(p Proc) bool {
			return p.Name() == shimName && strings.Contains(p.CmdlineString(), s.id)
		})
		_, statErr := os.Lstat(socket)
		if len(procs) == 0 && statErr != nil {
			s.requestAfterShutdown()
			return
		}
		if time.Now().After(deadline) {
			if len(procs) > 0 {
				s.t.Errorf("shim still running 5s after Shutdown: %v", procs)
			}
			if statErr == nil {
				s.t.Errorf("shim socket %s left after Shutdown", socket)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
