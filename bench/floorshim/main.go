// Command floorshim is containerd-shim-floor-v2, the "floor" runtime of the
// benchmarks: a containerd shim v2 that runs nothing and answers every Task
// API call at once with success. Timing
//
//	ctr run --rm --runtime io.containerd.floor.v2 --rootfs DIR ID /bin/true
//
// through it measures what containerd and ctr cost with the runtime's share
// (almost) at zero. It speaks both start protocols (containerd 1.6's plain
// address, 2.3+'s BootstrapParams/BootstrapResult) and serves the Task API
// v2 and v3, publishes no events, opens no IO and logs nothing.
//
// It stays small on purpose: ttrpc, the task v2 messages and protobuf only.
// The task v3 service is served with the v2 messages under the v3 name (the
// two .proto files differ in nothing but their package), as the v3 package
// would link gRPC.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bootstrapapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	apitypes "github.com/containerd/containerd/api/types"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const (
	name             = "containerd-shim-floor-v2"
	runtimeName      = "io.containerd.floor.v2"
	defaultSocketDir = "/run/mini-floor"
	unixScheme       = "unix://"
	maxSocketPath    = 106 // sun_path holds 108 bytes with the NUL; keep a margin
	listenerFd       = 3   // where start hands the daemon its socket
	// exitGrace bounds how long the daemon outlives a Shutdown whose
	// client keeps its connection open.
	exitGrace = 10 * time.Millisecond
)

// options are the flags containerd passes, and the action.
type options struct {
	namespace, address, id, bundle, socket string
	version, info                          bool
	action                                 string
}

// parseArgs reads containerd's flags (-name value, -name=value, --name).
// Unknown flags are skipped rather than refused: a floor must not fail on
// a flag some containerd adds; a boolean one is assumed when the next
// argument is the action.
func parseArgs(args []string) (options, error) {
	var o options
	strs := map[string]*string{
		"namespace": &o.namespace, "address": &o.address, "id": &o.id,
		"bundle": &o.bundle, "socket": &o.socket, "publish-binary": new(string),
	}
	bools := map[string]*bool{"v": &o.version, "version": &o.version, "debug": new(bool), "info": &o.info}
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		key := strings.TrimLeft(a, "-")
		val, hasVal := "", false
		if k, v, ok := strings.Cut(key, "="); ok {
			key, val, hasVal = k, v, true
		}
		if b, ok := bools[key]; ok {
			*b = !hasVal || val == "true" || val == "1"
			continue
		}
		if !hasVal {
			if i+1 >= len(args) || (strs[key] == nil && (isAction(args[i+1]) || strings.HasPrefix(args[i+1], "-"))) {
				continue // an unknown boolean flag
			}
			i++
			val = args[i]
		}
		if s, ok := strs[key]; ok {
			*s = val
		}
	}
	switch len(pos) {
	case 0:
	case 1:
		o.action = pos[0]
	default:
		return o, fmt.Errorf("unexpected arguments %q", pos[1:])
	}
	if !isAction(o.action) && o.action != "" {
		return o, fmt.Errorf("unknown action %q", o.action)
	}
	if o.namespace == "" {
		o.namespace = os.Getenv("NAMESPACE")
	}
	if o.address == "" {
		o.address = os.Getenv("GRPC_ADDRESS")
	}
	return o, nil
}

func isAction(s string) bool { return s == "start" || s == "delete" }

func main() {
	o, err := parseArgs(os.Args[1:])
	if err == nil {
		switch {
		case o.version:
			fmt.Println(name, "(floor: runs nothing)")
		case o.info:
			err = info(os.Stdin, os.Stdout)
		case o.action == "start":
			err = start(o, os.Stdin, os.Stdout)
		case o.action == "delete":
			err = deleteAction(o, os.Stdout)
		default:
			err = serve(o)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// info answers containerd 2.x's `-info` probe (it asks once per runtime,
// and again after each failure, before creating a task) with a bare
// RuntimeInfo: no features, no annotations.
func info(stdin io.Reader, stdout io.Writer) error {
	in, err := io.ReadAll(stdin)
	if err != nil {
		return err
	}
	ri := &apitypes.RuntimeInfo{Name: runtimeName, Version: &apitypes.RuntimeVersion{Version: "floor"}}
	if len(in) > 0 {
		ri.Options = &anypb.Any{}
		if err := proto.Unmarshal(in, ri.Options); err != nil {
			return fmt.Errorf("runtime options: %w", err)
		}
	}
	out, err := proto.Marshal(ri)
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}

// socketPath names the daemon's socket after containerd's address, the
// namespace and the id, so two containerds running the same id do not meet.
func socketPath(dir, address, namespace, id string) (string, error) {
	sum := sha256.Sum256([]byte(address + "/" + namespace + "/" + id))
	p := filepath.Join(dir, hex.EncodeToString(sum[:]))
	if len(p) >= maxSocketPath {
		return "", fmt.Errorf("socket path %s is %d bytes, too long for a unix socket", p, len(p))
	}
	return p, nil
}

// start creates the socket, launches the daemon on it, writes the address
// into the bundle and prints it in the format the caller's containerd
// expects. Only that answer may reach stdout (1.6 reads stdout and stderr
// together).
func start(o options, stdin io.Reader, stdout io.Writer) error {
	in, err := io.ReadAll(stdin)
	if err != nil {
		return fmt.Errorf("read stdin: %w", err)
	}
	// containerd 2.3+ sends BootstrapParams; 1.6 sends runtime options (an
	// Any) or nothing. An Any can decode as BootstrapParams too, so only
	// params naming our id and namespace count.
	var params *bootstrapapi.BootstrapParams
	if len(in) > 0 {
		var p bootstrapapi.BootstrapParams
		if proto.Unmarshal(in, &p) == nil && p.GetInstanceID() == o.id && p.GetNamespace() == o.namespace {
			params = &p
		}
	}
	address, dir := o.address, defaultSocketDir
	if params != nil {
		if a := params.GetContainerdGrpcAddress(); a != "" {
			address = a
		}
		if d := params.GetSocketDir(); d != "" {
			dir = d
		}
	}
	path, err := socketPath(dir, address, o.namespace, o.id)
	if err != nil {
		return err
	}
	l, err := listen(path)
	if err != nil {
		return err
	}
	defer l.Close() // our copy; the daemon has its own
	if err := launch(o, address, path, l); err != nil {
		os.Remove(path)
		return err
	}
	addr := unixScheme + path
	bundle := o.bundle
	if bundle == "" {
		bundle = "." // containerd runs start in the bundle
	}
	if err := os.WriteFile(filepath.Join(bundle, "address"), []byte(addr), 0o600); err != nil {
		return err
	}
	out := []byte(addr)
	if params != nil {
		res := &bootstrapapi.BootstrapResult{Version: 3, Address: addr, Protocol: "ttrpc"}
		if out, err = proto.Marshal(res); err != nil {
			return err
		}
	}
	_, err = stdout.Write(out)
	return err
}

// listen creates the socket at path, owner-only, replacing whatever was
// left there.
func listen(path string) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return nil, err
	}
	addr := &net.UnixAddr{Name: path, Net: "unix"}
	l, err := net.ListenUnix("unix", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		os.Remove(path)
		l, err = net.ListenUnix("unix", addr)
	}
	if err != nil {
		return nil, err
	}
	// Closing start's copy must not unlink the path the daemon serves.
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		os.Remove(path)
		return nil, err
	}
	return l, nil
}

// launch re-executes this binary without an action, in its own session,
// with the listener as fd 3 and stdio on /dev/null (containerd reads start's
// output until EOF), and does not wait for it.
func launch(o options, address, path string, l *net.UnixListener) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	f, err := l.File()
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(self, "-namespace", o.namespace, "-id", o.id, "-address", address, "-socket", path)
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	return cmd.Process.Release()
}

// deleteAction is what containerd runs once a shim is gone: report an exit
// of 0 and remove the socket if the daemon left it.
func deleteAction(o options, stdout io.Writer) error {
	bundle := o.bundle
	if bundle == "" {
		bundle = "."
	}
	if b, err := os.ReadFile(filepath.Join(bundle, "address")); err == nil && strings.HasPrefix(string(b), unixScheme) {
		os.Remove(strings.TrimPrefix(strings.TrimSpace(string(b)), unixScheme))
	} else if p, err := socketPath(defaultSocketDir, o.address, o.namespace, o.id); err == nil {
		os.Remove(p)
	}
	out, err := proto.Marshal(&taskapi.DeleteResponse{ExitedAt: timestamppb.Now()})
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}

// serve is the daemon: the Task API on the listener start handed over,
// until Shutdown.
func serve(o options) error {
	domain, err := syscall.GetsockoptInt(listenerFd, syscall.SOL_SOCKET, syscall.SO_DOMAIN)
	if err != nil || domain != syscall.AF_UNIX {
		return errors.New("serve mode needs the listening socket as fd 3 (run `start`)")
	}
	f := os.NewFile(listenerFd, "socket")
	inner, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("socket on fd 3: %w", err)
	}
	s := &floor{pid: uint32(os.Getpid()), socket: o.socket, tasks: map[string]*proc{}}
	srv, err := ttrpc.NewServer()
	if err != nil {
		return err
	}
	desc := s.service()
	srv.RegisterService("containerd.task.v2.Task", desc)
	srv.RegisterService("containerd.task.v3.Task", desc)
	return srv.Serve(context.Background(), &trackingListener{Listener: inner, f: s})
}

// proc is what the floor remembers of a task or exec.
type proc struct {
	bundle, stdin, stdout, stderr string
	terminal, started             bool
}

type floor struct {
	pid    uint32
	socket string

	mu    sync.Mutex
	tasks map[string]*proc // by id + "/" + exec id

	shutdown atomic.Bool
	conns    atomic.Int32
	exitOnce sync.Once
}

func key(id, execID string) string { return id + "/" + execID }

func (s *floor) add(id, execID string, p *proc) {
	s.mu.Lock()
	s.tasks[key(id, execID)] = p
	s.mu.Unlock()
}

// exit ends the daemon once Shutdown was answered: when the last client
// hangs up (containerd closes its connection right after Shutdown), or
// after exitGrace.
func (s *floor) exit() {
	s.exitOnce.Do(func() { os.Exit(0) })
}

// method adapts f to a ttrpc method; the Task API v2 and v3 share the
// messages, so one table serves both.
func method[Req any, PReq interface {
	*Req
	proto.Message
}, Resp proto.Message](f func(PReq) Resp) ttrpc.Method {
	return func(_ context.Context, unmarshal func(any) error) (any, error) {
		req := PReq(new(Req))
		if err := unmarshal(req); err != nil {
			return nil, err
		}
		return f(req), nil
	}
}

func empty[Req any, PReq interface {
	*Req
	proto.Message
}]() ttrpc.Method {
	return method(func(PReq) *emptypb.Empty { return &emptypb.Empty{} })
}

func (s *floor) service() *ttrpc.ServiceDesc {
	return &ttrpc.ServiceDesc{Methods: map[string]ttrpc.Method{
		"State":  method(s.state),
		"Create": method(s.create),
		"Start":  method(s.start),
		"Delete": method(s.delete),
		"Pids":   method(func(*taskapi.PidsRequest) *taskapi.PidsResponse { return &taskapi.PidsResponse{} }),
		"Exec": method(func(r *taskapi.ExecProcessRequest) *emptypb.Empty {
			s.add(r.ID, r.ExecID, &proc{stdin: r.Stdin, stdout: r.Stdout, stderr: r.Stderr, terminal: r.Terminal})
			return &emptypb.Empty{}
		}),
		"Pause":      empty[taskapi.PauseRequest](),
		"Resume":     empty[taskapi.ResumeRequest](),
		"Checkpoint": empty[taskapi.CheckpointTaskRequest](),
		"Kill":       empty[taskapi.KillRequest](),
		"ResizePty":  empty[taskapi.ResizePtyRequest](),
		"CloseIO":    empty[taskapi.CloseIORequest](),
		"Update":     empty[taskapi.UpdateTaskRequest](),
		"Wait": method(func(*taskapi.WaitRequest) *taskapi.WaitResponse {
			return &taskapi.WaitResponse{ExitedAt: timestamppb.Now()}
		}),
		"Stats": method(func(*taskapi.StatsRequest) *taskapi.StatsResponse { return &taskapi.StatsResponse{} }),
		"Connect": method(func(*taskapi.ConnectRequest) *taskapi.ConnectResponse {
			return &taskapi.ConnectResponse{ShimPid: s.pid, TaskPid: s.pid}
		}),
		"Shutdown": method(s.shutdownTask),
	}}
}

func (s *floor) create(r *taskapi.CreateTaskRequest) *taskapi.CreateTaskResponse {
	s.add(r.ID, "", &proc{bundle: r.Bundle, stdin: r.Stdin, stdout: r.Stdout, stderr: r.Stderr, terminal: r.Terminal})
	return &taskapi.CreateTaskResponse{Pid: s.pid}
}

func (s *floor) start(r *taskapi.StartRequest) *taskapi.StartResponse {
	s.mu.Lock()
	p := s.tasks[key(r.ID, r.ExecID)]
	if p != nil && !p.started {
		p.started = true
		// The process "ran" and exited: its output ends. ctr 2.x's
		// `t exec` waits for that EOF on its fifos.
		go closeOutput(p.stdout)
		if !p.terminal {
			go closeOutput(p.stderr)
		}
	}
	s.mu.Unlock()
	return &taskapi.StartResponse{Pid: s.pid}
}

// closeOutput opens the client's output fifo path for writing and closes
// it, so its reader sees EOF. The open waits for the reader (the client
// opens its end around the Create or Exec call); one that never comes
// leaves the goroutine blocked until the daemon exits. URIs (binary://,
// file://: logging drivers) are left alone.
func closeOutput(path string) {
	if path == "" || strings.Contains(path, "://") {
		return
	}
	if f, err := os.OpenFile(path, os.O_WRONLY, 0); err == nil {
		f.Close()
	}
}

func (s *floor) state(r *taskapi.StateRequest) *taskapi.StateResponse {
	resp := &taskapi.StateResponse{ID: r.ID, ExecID: r.ExecID, Pid: s.pid, Status: tasktypes.Status_STOPPED}
	s.mu.Lock()
	if p := s.tasks[key(r.ID, r.ExecID)]; p != nil {
		resp.Bundle, resp.Stdin, resp.Stdout, resp.Stderr, resp.Terminal = p.bundle, p.stdin, p.stdout, p.stderr, p.terminal
		if !p.started {
			resp.Status = tasktypes.Status_CREATED
		}
	}
	s.mu.Unlock()
	if resp.Status == tasktypes.Status_STOPPED {
		resp.ExitedAt = timestamppb.Now()
	}
	return resp
}

func (s *floor) delete(r *taskapi.DeleteRequest) *taskapi.DeleteResponse {
	s.mu.Lock()
	delete(s.tasks, key(r.ID, r.ExecID))
	s.mu.Unlock()
	return &taskapi.DeleteResponse{Pid: s.pid, ExitedAt: timestamppb.Now()}
}

// shutdownTask answers, then ends the daemon: no new connection finds the
// socket, and the process exits once the reply is out (see exit).
func (s *floor) shutdownTask(*taskapi.ShutdownRequest) *emptypb.Empty {
	if !s.shutdown.Swap(true) {
		if s.socket != "" {
			os.Remove(s.socket)
		}
		time.AfterFunc(exitGrace, s.exit)
	}
	return &emptypb.Empty{}
}

// trackingListener counts the open connections, so that the daemon exits
// as soon as containerd hangs up after Shutdown.
type trackingListener struct {
	net.Listener
	f *floor
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.f.conns.Add(1)
	return &trackedConn{Conn: c, f: l.f}, nil
}

type trackedConn struct {
	net.Conn
	f    *floor
	once sync.Once
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		if c.f.conns.Add(-1) == 0 && c.f.shutdown.Load() {
			c.f.exit()
		}
	})
	return err
}
