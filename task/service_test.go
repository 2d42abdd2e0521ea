package task

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"

	"github.com/minishim/containerd-shim-mini-v2/process"
)

type fakeMonitor struct{ exits chan process.Exit }

func (m *fakeMonitor) Start(cmd *exec.Cmd) (<-chan process.Exit, error) {
	return nil, errdefs.ErrNotImplemented
}

func (m *fakeMonitor) Subscribe() (<-chan process.Exit, func()) { return m.exits, func() {} }

type recordingPublisher struct {
	mu     sync.Mutex
	topics []string
}

func (p *recordingPublisher) Publish(ctx context.Context, namespace, topic string, ev proto.Message) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.topics = append(p.topics, topic)
}

func newTestService(t *testing.T) (*Service, *recordingPublisher) {
	t.Helper()
	pub := &recordingPublisher{}
	mon := &fakeMonitor{exits: make(chan process.Exit)}
	t.Cleanup(func() { close(mon.exits) })
	s := NewService(context.Background(), Config{Namespace: "test", Publisher: pub, Monitor: mon, ShimPid: os.Getpid()})
	return s, pub
}

// TestServiceErrors checks that requests the service must refuse are refused
// with the errdefs class containerd maps to the right code, and that no
// event is published for them.
func TestServiceErrors(t *testing.T) {
	ctx := context.Background()
	s, pub := newTestService(t)
	noConfig := t.TempDir()
	badConfig := t.TempDir()
	if err := os.WriteFile(filepath.Join(badConfig, "config.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	noArgs := t.TempDir()
	if err := os.WriteFile(filepath.Join(noArgs, "config.json"), []byte(`{"process":{"args":[]},"root":{"path":"rootfs"},"linux":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		call  func() error
		class func(error) bool
	}{
		{"create without id", func() error {
			_, err := s.Create(ctx, &taskv3.CreateTaskRequest{Bundle: noConfig})
			return err
		}, errdefs.IsInvalidArgument},
		{"create without config.json", func() error {
			_, err := s.Create(ctx, &taskv3.CreateTaskRequest{ID: "c1", Bundle: noConfig})
			return err
		}, errdefs.IsNotFound},
		{"create with broken config.json", func() error {
			_, err := s.Create(ctx, &taskv3.CreateTaskRequest{ID: "c1", Bundle: badConfig})
			return err
		}, errdefs.IsInvalidArgument},
		{"create with empty args", func() error {
			_, err := s.Create(ctx, &taskv3.CreateTaskRequest{ID: "c1", Bundle: noArgs})
			return err
		}, errdefs.IsInvalidArgument},
		{"create with a parent checkpoint", func() error {
			_, err := s.Create(ctx, &taskv3.CreateTaskRequest{ID: "c1", Bundle: noConfig, Checkpoint: "/x", ParentCheckpoint: "/y"})
			return err
		}, errdefs.IsNotImplemented},
		{"create from checkpoint without config.json", func() error {
			_, err := s.Create(ctx, &taskv3.CreateTaskRequest{ID: "c1", Bundle: noConfig, Checkpoint: "/x"})
			return err
		}, errdefs.IsNotFound},
		{"start unknown", func() error {
			_, err := s.Start(ctx, &taskv3.StartRequest{ID: "nope"})
			return err
		}, errdefs.IsNotFound},
		{"kill unknown", func() error {
			_, err := s.Kill(ctx, &taskv3.KillRequest{ID: "nope", Signal: 9})
			return err
		}, errdefs.IsNotFound},
		{"delete unknown", func() error {
			_, err := s.Delete(ctx, &taskv3.DeleteRequest{ID: "nope"})
			return err
		}, errdefs.IsNotFound},
		{"state unknown", func() error {
			_, err := s.State(ctx, &taskv3.StateRequest{ID: "nope"})
			return err
		}, errdefs.IsNotFound},
		{"wait unknown", func() error {
			_, err := s.Wait(ctx, &taskv3.WaitRequest{ID: "nope"})
			return err
		}, errdefs.IsNotFound},
		{"pids unknown", func() error {
			_, err := s.Pids(ctx, &taskv3.PidsRequest{ID: "nope"})
			return err
		}, errdefs.IsNotFound},
		{"exec in unknown container", func() error {
			_, err := s.Exec(ctx, &taskv3.ExecProcessRequest{ID: "c1", ExecID: "e1"})
			return err
		}, errdefs.IsNotFound},
		{"exec without id", func() error {
			_, err := s.Exec(ctx, &taskv3.ExecProcessRequest{ID: "c1"})
			return err
		}, errdefs.IsInvalidArgument},
		{"start unknown exec", func() error {
			_, err := s.Start(ctx, &taskv3.StartRequest{ID: "nope", ExecID: "e1"})
			return err
		}, errdefs.IsNotFound},
		{"resize unknown", func() error {
			_, err := s.ResizePty(ctx, &taskv3.ResizePtyRequest{ID: "nope", Width: 80, Height: 24})
			return err
		}, errdefs.IsNotFound},
		{"pause unknown", func() error {
			_, err := s.Pause(ctx, &taskv3.PauseRequest{ID: "c1"})
			return err
		}, errdefs.IsNotFound},
		{"stats unknown", func() error {
			_, err := s.Stats(ctx, &taskv3.StatsRequest{ID: "c1"})
			return err
		}, errdefs.IsNotFound},
		{"update unknown", func() error {
			_, err := s.Update(ctx, &taskv3.UpdateTaskRequest{ID: "c1"})
			return err
		}, errdefs.IsNotFound},
		{"checkpoint unknown", func() error {
			_, err := s.Checkpoint(ctx, &taskv3.CheckpointTaskRequest{ID: "c1"})
			return err
		}, errdefs.IsNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil {
				t.Fatal("no error")
			}
			if native := errgrpc.ToNative(err); !tt.class(native) {
				t.Fatalf("error %v has the wrong class", err)
			}
		})
	}
	if len(pub.topics) != 0 {
		t.Fatalf("events published for refused requests: %v", pub.topics)
	}
	// A refused create leaves its id free.
	s.mu.Lock()
	left := len(s.containers)
	s.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d containers registered after refused creates", left)
	}
}

func TestServiceShutdownWhenEmpty(t *testing.T) {
	s, _ := newTestService(t)
	done := make(chan struct{})
	s.cfg.Shutdown = func() { close(done) }
	if _, err := s.Shutdown(context.Background(), &taskv3.ShutdownRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	<-done
	// A Create that reached the shim since (a grouped start connected
	// just before) is turned away: nobody would serve its container.
	_, err := s.Create(context.Background(), &taskv3.CreateTaskRequest{ID: "c2", Bundle: t.TempDir()})
	if !errdefs.IsUnavailable(errgrpc.ToNative(err)) || !strings.Contains(fmt.Sprint(err), "shutting down") {
		t.Fatalf("Create after an accepted Shutdown: want Unavailable, shutting down; got %v", err)
	}
}

func TestServiceConnect(t *testing.T) {
	s, _ := newTestService(t)
	resp, err := s.Connect(context.Background(), &taskv3.ConnectRequest{ID: "c1"})
	if err != nil || resp.ShimPid != uint32(os.Getpid()) {
		t.Fatalf("Connect = %v, %v", resp, err)
	}
}

// TestServiceRequestsDuringCreate: containerd 2.x asks for State (and may
// send other requests) while Create of the same id is still running; the
// reserved id must read as not found, not crash the shim.
func TestServiceRequestsDuringCreate(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestService(t)
	s.mu.Lock()
	s.containers[containerKey(s.cfg.Namespace, "c1")] = nil // what create holds while it spawns
	s.mu.Unlock()
	calls := map[string]func() error{
		"state": func() error { _, err := s.State(ctx, &taskv3.StateRequest{ID: "c1"}); return err },
		"kill":  func() error { _, err := s.Kill(ctx, &taskv3.KillRequest{ID: "c1", Signal: 9}); return err },
		"wait":  func() error { _, err := s.Wait(ctx, &taskv3.WaitRequest{ID: "c1"}); return err },
		"pids":  func() error { _, err := s.Pids(ctx, &taskv3.PidsRequest{ID: "c1"}); return err },
		"start": func() error { _, err := s.Start(ctx, &taskv3.StartRequest{ID: "c1"}); return err },
		"delete": func() error {
			_, err := s.Delete(ctx, &taskv3.DeleteRequest{ID: "c1"})
			return err
		},
		"create again": func() error {
			_, err := s.Create(ctx, &taskv3.CreateTaskRequest{ID: "c1", Bundle: t.TempDir()})
			if !errdefs.IsAlreadyExists(errgrpc.ToNative(err)) {
				t.Errorf("second create: %v; want already exists", err)
			}
			return errgrpc.ToGRPC(errdefs.ErrNotFound)
		},
	}
	for name, call := range calls {
		if err := call(); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
			t.Errorf("%s during create: %v; want not found", name, err)
		}
	}
	if _, err := s.Connect(ctx, &taskv3.ConnectRequest{ID: "c1"}); err != nil {
		t.Errorf("connect during create: %v", err)
	}
}

// Bad input at the ttrpc door: ids containerd would refuse, a symlinked
// bundle, an oversized config.json; each a clear InvalidArgument, nothing
// registered.
func TestServiceBadInput(t *testing.T) {
	ctx := context.Background()
	s, pub := newTestService(t)
	real := t.TempDir()
	link := filepath.Join(t.TempDir(), "bundle")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	huge := t.TempDir()
	f, err := os.Create(filepath.Join(huge, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(100 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	tests := []struct {
		name   string
		call   func() error
		naming string
	}{
		{"slash", func() error { _, err := s.Create(ctx, &taskv3.CreateTaskRequest{ID: "a/b", Bundle: real}); return err }, `"a/b"`},
		{"dot dot", func() error { _, err := s.Create(ctx, &taskv3.CreateTaskRequest{ID: "..", Bundle: real}); return err }, `".."`},
		{"nul", func() error {
			_, err := s.Create(ctx, &taskv3.CreateTaskRequest{ID: "a\x00b", Bundle: real})
			return err
		}, "container id"},
		{"1 MB", func() error {
			_, err := s.Create(ctx, &taskv3.CreateTaskRequest{ID: strings.Repeat("a", 1<<20), Bundle: real})
			return err
		}, "1048576 bytes"},
		{"exec id", func() error { _, err := s.Exec(ctx, &taskv3.ExecProcessRequest{ID: "c1", ExecID: "../e"}); return err }, "exec id"},
		{"symlinked bundle", func() error { _, err := s.Create(ctx, &taskv3.CreateTaskRequest{ID: "c1", Bundle: link}); return err }, "symlink"},
		{"100 MB config.json", func() error { _, err := s.Create(ctx, &taskv3.CreateTaskRequest{ID: "c1", Bundle: huge}); return err }, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := errgrpc.ToNative(tt.call())
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tt.naming) {
				t.Fatalf("got %v; want InvalidArgument naming %s", err, tt.naming)
			}
			if len(err.Error()) > 400 {
				t.Errorf("error of %d bytes: the id should be cut short", len(err.Error()))
			}
		})
	}
	if len(pub.topics) != 0 {
		t.Fatalf("events published for refused requests: %v", pub.topics)
	}
}

// TestServiceNamespacesApart: a shim shared by the node keys containers by
// namespace and id, so one id in two namespaces is two containers, and a
// request reaches only its own namespace's.
func TestServiceNamespacesApart(t *testing.T) {
	s, _ := newTestService(t)
	in := func(ns string) context.Context {
		return ttrpc.WithMetadata(context.Background(), ttrpc.MD{namespaceKey: []string{ns}})
	}
	s.mu.Lock()
	s.containers[containerKey("a", "c1")] = nil
	s.mu.Unlock()
	tests := []struct {
		ctx  context.Context
		want func(error) bool
		what string
	}{
		{in("a"), errdefs.IsAlreadyExists, "already exists"},
		// Past the id check, failing on the empty bundle.
		{in("b"), errdefs.IsNotFound, "not found (no config.json)"},
		// A request naming no namespace is the shim's own one's.
		{context.Background(), errdefs.IsNotFound, "not found (no config.json)"},
	}
	for _, tt := range tests {
		_, err := s.Create(tt.ctx, &taskv3.CreateTaskRequest{ID: "c1", Bundle: t.TempDir()})
		if !tt.want(errgrpc.ToNative(err)) {
			t.Errorf("create c1 in %q: %v; want %s", s.requestNamespace(tt.ctx), err, tt.what)
		}
	}
}
