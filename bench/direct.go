package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/ttrpc"
	"github.com/minishim/containerd-shim-mini-v2/integration"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
)

// The runtime-level figures: each shim binary driven straight over ttrpc
// the way containerd 2.4 drives it (bootstrap `start` with BootstrapParams
// on stdin, then the Task API), with no containerd in the path. Events go
// to a sink in this process that drops them, so what is timed is the
// shim's own work and the kernel's.

// Lifecycle phases, in order; the exec phases follow.
var lifecyclePhases = []string{"start", "Create", "Start", "Wait", "Delete", "Shutdown"}
var execPhases = []string{"Exec", "Start", "Wait", "Delete"}

// directRuntime is one shim binary under test.
type directRuntime struct {
	name string // short name for the table
	bin  string
	// group are the annotations that put a container in the shim the
	// runtime shares: ours by namespace, runc-v2's by its group.
	group map[string]string
}

// directEnv is what every direct call shares.
type directEnv struct {
	c       *integration.Containerd // only for its addresses, namespace and binary
	sink    string                  // ttrpc address of the event sink
	dir     string                  // bundles go below
	spec    *specs.Spec             // /bin/true; cgroupsPath set per container
	version string                  // containerd version the shims are told
	// steps, when set, collects the step timings our shim logs at debug
	// level (-steps): the shims then log at debug, which costs time.
	steps *stepLog
}

// directShim is one running shim daemon and a ttrpc client to it.
type directShim struct {
	env     *directEnv
	id      string
	bundle  string
	client  *ttrpc.Client
	service string // containerd.task.v2.Task or .v3
	pid     int    // the daemon's, from Connect
	logFifo *os.File
}

// startEventSink serves containerd's ttrpc Events service on a socket in
// dir, accepting and dropping every event.
func startEventSink(dir string) (addr string, stop func(), err error) {
	addr = filepath.Join(dir, "events.sock")
	l, err := net.Listen("unix", addr)
	if err != nil {
		return "", nil, err
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		l.Close()
		return "", nil, err
	}
	eventsapi.RegisterTTRPCEventsService(srv, eventSink{})
	go srv.Serve(context.Background(), l)
	return addr, func() { srv.Close() }, nil
}

type eventSink struct{}

func (eventSink) Forward(context.Context, *eventsapi.ForwardRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

// directBenchOn prints the runtime-level table for runtimes on the
// addresses of c: a lifecycle of /bin/true per run and an exec of
// /bin/true into one sleeping container per runtime, interleaved.
func directBenchOn(ctx context.Context, cfg config, c *integration.Containerd, rts []directRuntime, rootfs string) error {
	base, err := c.DefaultSpec(ctx, rootfs)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "mini-direct-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sink, stopSink, err := startEventSink(dir)
	if err != nil {
		return err
	}
	defer stopSink()
	env := &directEnv{c: c, sink: sink, dir: dir, spec: base, version: "2.4.2"}
	if cfg.steps {
		env.steps = &stepLog{}
	}

	// One sleeping container per runtime for the execs.
	sleepers := make([]*directShim, len(rts))
	defer func() {
		for _, s := range sleepers {
			if s != nil {
				s.destroy(ctx)
			}
		}
		// runc-v2 leaves a group shim's socket when the shim exits.
		for _, rt := range rts {
			if g := rt.group["io.containerd.runc.v2.group"]; g != "" {
				if err := integration.RemoveRuncGroupSockets(c, g, func(string, ...any) {}); err != nil {
					fmt.Fprintf(os.Stderr, "bench: %v\n", err)
				}
			}
		}
	}()
	// They hold the runtimes' shared shims too.
	for k, rt := range rts {
		s, _, err := env.launch(ctx, rt, "/bin/sleep", "100000")
		if err != nil {
			return err
		}
		sleepers[k] = s
		if err := s.call(ctx, "Start", &taskapi.StartRequest{ID: s.id}, &taskapi.StartResponse{}); err != nil {
			return fmt.Errorf("%s: start the exec target: %w", rt.name, err)
		}
	}

	fmt.Printf("runtime level: each shim driven over ttrpc as containerd 2.4 drives it, no containerd in the path,\n")
	fmt.Printf("  events dropped by a sink; %d lifecycles of /bin/true (start, Create, Start, Wait, Delete, Shutdown)\n", cfg.runs)
	fmt.Printf("  and %d execs of /bin/true into a sleeping container (Exec, Start, Wait, Delete) per runtime, interleaved;\n", cfg.runs)
	fmt.Printf("  and %d lifecycles in the shim that sleeping container holds (%s: per namespace, %s: its group)\n",
		cfg.runs, rts[0].name, rts[len(rts)-1].name)
	// times[k][p]: runtime k's lifecycle phase p; grouped and execTimes
	// likewise.
	times := phaseLists(len(rts), len(lifecyclePhases))
	grouped := phaseLists(len(rts), len(lifecyclePhases))
	execTimes := phaseLists(len(rts), len(execPhases))
	// Cells of runtime k: 3k a lifecycle, 3k+1 one in the shared shim,
	// 3k+2 an exec.
	n := 0
	err = rounds(cfg, 3*len(rts), func(cell int, measured bool) error {
		k := cell / 3
		var ph []time.Duration
		var err error
		var into [][]time.Duration
		switch cell % 3 {
		case 0:
			into = times[k]
			ph, err = env.lifecycle(ctx, rts[k], false)
		case 1:
			into = grouped[k]
			ph, err = env.lifecycle(ctx, rts[k], true)
		default:
			n++
			into = execTimes[k]
			if ph, err = sleepers[k].exec(ctx, fmt.Sprintf("x%d", n)); err != nil {
				err = fmt.Errorf("%s: %w", rts[k].name, err)
			}
		}
		if err == nil && measured {
			record(into, ph)
		}
		return err
	})
	if err != nil {
		return err
	}
	printPhaseTable(rts, "lifecycle", lifecyclePhases, times)
	printPhaseTable(rts, "exec", execPhases, execTimes)
	printPhaseTable(rts, "lifecycle in a shared shim", lifecyclePhases, grouped)
	if env.steps != nil {
		fmt.Println("  (-steps: every shim logged at debug level, so the figures above include that cost)")
		env.steps.print()
	}
	fmt.Println()
	return nil
}

// phaseLists makes the duration lists of phases phases (and their total)
// for each of rts runtimes.
func phaseLists(rts, phases int) [][][]time.Duration {
	out := make([][][]time.Duration, rts)
	for k := range out {
		out[k] = make([][]time.Duration, phases+1)
	}
	return out
}

// record appends each phase's duration, and then their total, to into.
func record(into [][]time.Duration, phases []time.Duration) {
	var total time.Duration
	for p, d := range phases {
		into[p] = append(into[p], d)
		total += d
	}
	into[len(phases)] = append(into[len(phases)], total)
}

func printPhaseTable(rts []directRuntime, what string, phases []string, times [][][]time.Duration) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s, ms: median [p25 p75]\t", what)
	for _, rt := range rts {
		fmt.Fprintf(tw, "%s\t", rt.name)
	}
	fmt.Fprintf(tw, "ratio of medians\t\n")
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	for p, name := range append(append([]string{}, phases...), what+" total") {
		fmt.Fprintf(tw, "%s\t", name)
		for k := range rts {
			s := times[k][p]
			fmt.Fprintf(tw, "%.1f [%.1f %.1f]\t", ms(percentile(s, 50)), ms(percentile(s, 25)), ms(percentile(s, 75)))
		}
		ratio := "-"
		if len(rts) == 2 {
			if b := percentile(times[1][p], 50); b > 0 {
				ratio = fmt.Sprintf("%.2f", float64(percentile(times[0][p], 50))/float64(b))
			}
		}
		fmt.Fprintf(tw, "%s\t\n", ratio)
	}
	tw.Flush()
}

// lifecycle runs /bin/true through one fresh shim (grouped: through the
// shim the runtime shares, which stays) and returns the duration of each
// of lifecyclePhases.
func (e *directEnv) lifecycle(ctx context.Context, rt directRuntime, grouped bool) ([]time.Duration, error) {
	s, startTime, err := e.launchStarted(ctx, rt, grouped)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			s.destroy(ctx)
		}
	}()
	phases := []time.Duration{startTime}
	timed := func(method string, req, resp proto.Message) error {
		t0 := time.Now()
		err := s.call(ctx, method, req, resp)
		phases = append(phases, time.Since(t0))
		return err
	}
	create := &taskapi.CreateTaskRequest{ID: s.id, Bundle: s.bundle}
	if err := timed("Create", create, &taskapi.CreateTaskResponse{}); err != nil {
		return nil, fmt.Errorf("%s Create: %w", rt.name, err)
	}
	if err := timed("Start", &taskapi.StartRequest{ID: s.id}, &taskapi.StartResponse{}); err != nil {
		return nil, fmt.Errorf("%s Start: %w", rt.name, err)
	}
	var wait taskapi.WaitResponse
	if err := timed("Wait", &taskapi.WaitRequest{ID: s.id}, &wait); err != nil {
		return nil, fmt.Errorf("%s Wait: %w", rt.name, err)
	}
	if wait.ExitStatus != 0 {
		return nil, fmt.Errorf("%s: /bin/true exited %d", rt.name, wait.ExitStatus)
	}
	if err := timed("Delete", &taskapi.DeleteRequest{ID: s.id}, &taskapi.DeleteResponse{}); err != nil {
		return nil, fmt.Errorf("%s Delete: %w", rt.name, err)
	}
	if err := s.connect(ctx); err != nil {
		return nil, err
	}
	if err := timed("Shutdown", &taskapi.ShutdownRequest{ID: s.id}, &emptypb.Empty{}); err != nil && !isClosed(err) {
		return nil, fmt.Errorf("%s Shutdown: %w", rt.name, err)
	}
	if grouped {
		s.pid = 0 // the shared shim serves on
	}
	ok = true
	return phases, s.finish(ctx)
}

// launch starts a shim for a new container running args in the
// runtime's shared shim and creates the task, returning the shim and how
// long `start` took.
func (e *directEnv) launch(ctx context.Context, rt directRuntime, args ...string) (*directShim, time.Duration, error) {
	s, d, err := e.launchStarted(ctx, rt, true, args...)
	if err != nil {
		return nil, 0, err
	}
	if err := s.call(ctx, "Create", &taskapi.CreateTaskRequest{ID: s.id, Bundle: s.bundle}, &taskapi.CreateTaskResponse{}); err != nil {
		s.destroy(ctx)
		return nil, 0, fmt.Errorf("%s Create: %w", rt.name, err)
	}
	if err := s.connect(ctx); err != nil {
		s.destroy(ctx)
		return nil, 0, err
	}
	return s, d, nil
}

// launchStarted writes a bundle for args (default /bin/true; grouped: in
// the runtime's shared shim), runs the shim's `start` and connects to the
// daemon it leaves.
func (e *directEnv) launchStarted(ctx context.Context, rt directRuntime, grouped bool, args ...string) (*directShim, time.Duration, error) {
	if len(args) == 0 {
		args = []string{"/bin/true"}
	}
	id := "bd-" + integration.RandomSuffix()
	s := &directShim{env: e, id: id, bundle: filepath.Join(e.dir, id)}
	var annotations map[string]string
	if grouped {
		annotations = rt.group
	}
	if err := s.writeBundle(args, annotations); err != nil {
		return nil, 0, err
	}
	params := &bootapi.BootstrapParams{
		InstanceID:             id,
		Namespace:              e.c.Namespace,
		LogLevel:               e.logLevel(),
		ContainerdVersion:      e.version,
		ContainerdTtrpcAddress: e.sink,
		ContainerdGrpcAddress:  e.c.Address,
		ContainerdBinary:       e.c.Version.Containerd(),
	}
	stdin, err := proto.Marshal(params)
	if err != nil {
		return nil, 0, err
	}
	cmd := exec.CommandContext(ctx, rt.bin, "-namespace", e.c.Namespace, "-address", e.c.Address,
		"-publish-binary", e.c.Version.Containerd(), "-id", id, "start")
	cmd.Dir = s.bundle
	cmd.Env = []string{"PATH=" + e.c.PATH, "TTRPC_ADDRESS=" + e.sink, "GRPC_ADDRESS=" + e.c.Address,
		"NAMESPACE=" + e.c.Namespace, "GOMAXPROCS=2", "MAX_SHIM_VERSION=3"}
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t0 := time.Now()
	err = cmd.Run()
	d := time.Since(t0)
	if err != nil {
		s.removeBundle()
		return nil, 0, fmt.Errorf("%s start: %v: %s", rt.name, err, strings.TrimSpace(stderr.String()))
	}
	var res bootapi.BootstrapResult
	if err := proto.Unmarshal(stdout.Bytes(), &res); err != nil || !strings.HasPrefix(res.Address, "unix://") {
		s.removeBundle()
		return nil, 0, fmt.Errorf("%s start printed no BootstrapResult: %q", rt.name, stdout.String())
	}
	s.service = fmt.Sprintf("containerd.task.v%d.Task", res.Version)
	conn, err := net.Dial("unix", strings.TrimPrefix(res.Address, "unix://"))
	if err != nil {
		s.removeBundle()
		return nil, 0, fmt.Errorf("%s: connect to %s: %w", rt.name, res.Address, err)
	}
	s.client = ttrpc.NewClient(conn)
	return s, d, nil
}

// writeBundle writes config.json (the base spec running args, with
// annotations, rooted at the shared rootfs, in a cgroup of its own) and
// the log fifo containerd would make, read and dropped here.
func (s *directShim) writeBundle(args []string, annotations map[string]string) error {
	if err := os.MkdirAll(s.bundle, 0o711); err != nil {
		return err
	}
	spec := *s.env.spec
	proc := *spec.Process
	proc.Args = args
	spec.Process = &proc
	lin := *spec.Linux
	lin.CgroupsPath = s.env.c.CgroupsPath(s.id)
	spec.Linux = &lin
	spec.Annotations = annotations
	data, err := json.Marshal(&spec)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.bundle, "config.json"), data, 0o644); err != nil {
		return err
	}
	fifo := filepath.Join(s.bundle, "log")
	if err := syscall.Mkfifo(fifo, 0o700); err != nil {
		return fmt.Errorf("mkfifo %s: %w", fifo, err)
	}
	// O_RDWR: opening does not wait for a writer.
	if s.logFifo, err = os.OpenFile(fifo, os.O_RDWR, 0); err != nil {
		return err
	}
	go s.env.steps.read(s.logFifo)
	return nil
}

func (e *directEnv) logLevel() bootapi.LogLevel {
	if e.steps != nil {
		return bootapi.LogLevel_LOG_LEVEL_DEBUG
	}
	return bootapi.LogLevel_LOG_LEVEL_INFO
}

func (s *directShim) call(ctx context.Context, method string, req, resp proto.Message) error {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cctx = ttrpc.WithMetadata(cctx, ttrpc.MD{"containerd-namespace-ttrpc": []string{s.env.c.Namespace}})
	return s.client.Call(cctx, s.service, method, req, resp)
}

// connect learns the daemon's pid, to wait for its exit after Shutdown.
func (s *directShim) connect(ctx context.Context) error {
	var resp taskapi.ConnectResponse
	if err := s.call(ctx, "Connect", &taskapi.ConnectRequest{ID: s.id}, &resp); err != nil {
		return fmt.Errorf("Connect %s: %w", s.id, err)
	}
	s.pid = int(resp.ShimPid)
	return nil
}

// exec runs /bin/true in s's container and returns each of execPhases.
func (s *directShim) exec(ctx context.Context, execID string) ([]time.Duration, error) {
	proc := *s.env.spec.Process
	proc.Args = []string{"/bin/true"}
	data, err := json.Marshal(&proc)
	if err != nil {
		return nil, err
	}
	spec := &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process", Value: data}
	var phases []time.Duration
	steps := []struct {
		method    string
		req, resp proto.Message
	}{
		{"Exec", &taskapi.ExecProcessRequest{ID: s.id, ExecID: execID, Spec: spec}, &emptypb.Empty{}},
		{"Start", &taskapi.StartRequest{ID: s.id, ExecID: execID}, &taskapi.StartResponse{}},
		{"Wait", &taskapi.WaitRequest{ID: s.id, ExecID: execID}, &taskapi.WaitResponse{}},
		{"Delete", &taskapi.DeleteRequest{ID: s.id, ExecID: execID}, &taskapi.DeleteResponse{}},
	}
	for _, st := range steps {
		t0 := time.Now()
		if err := s.call(ctx, st.method, st.req, st.resp); err != nil {
			return nil, fmt.Errorf("exec %s: %s: %w", execID, st.method, err)
		}
		phases = append(phases, time.Since(t0))
	}
	if w := steps[2].resp.(*taskapi.WaitResponse); w.ExitStatus != 0 {
		return nil, fmt.Errorf("exec %s: /bin/true exited %d", execID, w.ExitStatus)
	}
	return phases, nil
}

// destroy ends s however far it got: kill and delete the task, shut the
// shim down, and finish.
func (s *directShim) destroy(ctx context.Context) {
	s.call(ctx, "Kill", &taskapi.KillRequest{ID: s.id, Signal: uint32(syscall.SIGKILL), All: true}, &emptypb.Empty{})
	s.call(ctx, "Wait", &taskapi.WaitRequest{ID: s.id}, &taskapi.WaitResponse{})
	s.call(ctx, "Delete", &taskapi.DeleteRequest{ID: s.id}, &taskapi.DeleteResponse{})
	s.call(ctx, "Shutdown", &taskapi.ShutdownRequest{ID: s.id}, &emptypb.Empty{})
	if err := s.finish(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
	}
}

// finish waits for the daemon to exit (it is not our child: poll), then
// removes the bundle and the container's cgroup parents.
func (s *directShim) finish(ctx context.Context) error {
	s.client.Close()
	defer s.removeBundle()
	if s.pid <= 0 {
		return nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(s.pid, 0) == nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("shim %d of %s still running 10s after Shutdown", s.pid, s.id)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

func (s *directShim) removeBundle() {
	if s.logFifo != nil {
		s.logFifo.Close()
	}
	os.RemoveAll(s.bundle)
}

// isClosed: a shim may close the connection as it answers Shutdown.
func isClosed(err error) bool {
	return errors.Is(err, ttrpc.ErrClosed) || strings.Contains(err.Error(), "connection reset")
}

// directRuntimes names the binaries of cfg's two runtimes: ours from
// shimDir, any other from the containerd version's own directory (runc-v2
// built by the same Go as that containerd).
func directRuntimes(cfg config, shimDir string, v integration.Version) []directRuntime {
	var rts []directRuntime
	for _, rt := range []string{cfg.a, cfg.b} {
		dir := v.BinDir
		if rt == integration.MiniRuntime {
			dir = shimDir
		}
		group := map[string]string{"io.containerd.runc.v2.group": "bench-" + integration.RandomSuffix()}
		if rt == integration.MiniRuntime {
			group = map[string]string{shimGroupAnnotation: "namespace"}
		}
		rts = append(rts, directRuntime{name: integration.ShortRuntime(rt), bin: filepath.Join(dir, integration.ShimBinaryName(rt)), group: group})
	}
	return rts
}

// stepLog gathers the "request steps" lines our shim logs at debug level
// (package steptime): per method, each step's durations.
type stepLog struct {
	mu    sync.Mutex
	order []string                        // methods as first seen
	steps map[string][]string             // method -> step names in order
	took  map[string]map[string][]float64 // method -> step -> ms
}

// stepsAttr finds the steps="..." of a log line.
var stepsAttr = regexp.MustCompile(`method=\S*/(\w+) steps="([^"]*)"`)

// read drains a shim's log fifo; with l nil it only drains. A shim's
// first Create is told apart: it pays for the shim being new.
func (l *stepLog) read(f *os.File) {
	sc := bufio.NewScanner(f)
	creates := 0
	for sc.Scan() {
		if l == nil {
			continue
		}
		if m := stepsAttr.FindStringSubmatch(sc.Text()); m != nil {
			method := m[1]
			if method == "Create" {
				if creates == 0 {
					method = "Create (a new shim's first)"
				}
				creates++
			}
			l.add(method, m[2])
		}
	}
}

func (l *stepLog) add(method, steps string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.took == nil {
		l.steps, l.took = map[string][]string{}, map[string]map[string][]float64{}
	}
	if l.took[method] == nil {
		l.order = append(l.order, method)
		l.took[method] = map[string][]float64{}
	}
	for _, kv := range strings.Fields(steps) {
		name, v, ok := strings.Cut(kv, "=")
		ms, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil {
			continue
		}
		if _, seen := l.took[method][name]; !seen {
			l.steps[method] = append(l.steps[method], name)
		}
		l.took[method][name] = append(l.took[method][name], ms)
	}
}

// print shows each method's steps as medians.
func (l *stepLog) print() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, method := range l.order {
		fmt.Printf("  our shim's %s, steps (median ms of %d):", method, len(l.took[method]["total"]))
		for _, name := range l.steps[method] {
			v := slices.Clone(l.took[method][name])
			slices.Sort(v)
			fmt.Printf(" %s %.2f", name, v[len(v)/2])
		}
		fmt.Println()
	}
}
