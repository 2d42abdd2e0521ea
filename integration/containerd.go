package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DefaultNamespace is the containerd namespace the harness works in. It is
// also the first element of every container's cgroup path (/minitest/<id>).
const DefaultNamespace = "minitest"

// Options configure StartContainerd.
type Options struct {
	Version Version
	// ShimDir holds containerd-shim-mini-v2; it goes first on containerd's
	// PATH. Empty means: only the system shims.
	ShimDir string
	// Namespace ctr works in; DefaultNamespace when empty.
	Namespace string
	// CgroupParent is the first element of the containers' cgroup paths
	// where a client other than ctr names them (dockerd: "docker");
	// Namespace when empty, as ctr does.
	CgroupParent string
	// LogLevel of containerd (and of the shims it starts); "debug" when empty.
	LogLevel string
	// StartTimeout bounds the wait for the daemon to answer; 30s when zero.
	StartTimeout time.Duration
	// Keep leaves the temp dir (config, log, state) in place after Stop.
	Keep bool
	// CRI, when set, leaves containerd's CRI plugins enabled and configures
	// them (containerd 2.x only). Every other suite leaves it nil: the CRI
	// only slows their daemons down.
	CRI *CRIConfig
}

// CRIConfig is what the harness writes into the CRI plugins' sections.
type CRIConfig struct {
	// SandboxImage is the pinned "sandbox" (pause) image. There is no
	// registry here, so it must be imported before the first RunPodSandbox.
	SandboxImage string
	// Runtimes maps CRI runtime handler names ("mini") to runtime types
	// ("io.containerd.mini.v2").
	Runtimes map[string]string
	// BaseRuntimeSpecs maps some of those handlers to a base spec file:
	// every container of the handler starts from it (hooks, say).
	BaseRuntimeSpecs map[string]string
	// Options maps some of those handlers to the TOML lines of their
	// options table.
	Options map[string]string
}

// Containerd is one private containerd daemon started by the harness.
type Containerd struct {
	Version      Version
	Namespace    string
	CgroupParent string // see Options.CgroupParent
	Dir          string // temp dir holding everything below
	Root         string
	State        string
	Address      string // grpc socket
	TTRPCAddress string
	LogPath      string
	PATH         string // containerd's (and so the shims') PATH
	keep         bool
	opts         Options // what it was started with, for Restart

	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's result, valid after done is closed
}

// quietCtr keeps ctr 2.x from warning about cgroup v1 on every call.
const quietCtr = "CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS=1"

// StartContainerd writes a config into a fresh short temp dir (unix socket
// paths must stay under 108 bytes), starts containerd with it and waits
// until `ctr version` answers.
func StartContainerd(ctx context.Context, opts Options) (*Containerd, error) {
	v := opts.Version
	if err := v.Check(); err != nil {
		return nil, err
	}
	if opts.CRI != nil && len(v.CRIPlugins) == 0 {
		return nil, fmt.Errorf("containerd %s: the harness configures the CRI only for containerd 2.x", v.Name)
	}
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	if opts.CgroupParent == "" {
		opts.CgroupParent = opts.Namespace
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "debug"
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 30 * time.Second
	}
	dir, err := os.MkdirTemp("", "mt"+v.Tag()+"-")
	if err != nil {
		return nil, fmt.Errorf("containerd %s: temp dir: %w", v.Name, err)
	}
	// As /run/containerd: a container whose root is not host root (a user
	// namespace) must pass through to its bundle's rootfs.
	if err := os.Chmod(dir, 0o711); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("containerd %s: temp dir: %w", v.Name, err)
	}
	c := &Containerd{
		Version:      v,
		Namespace:    opts.Namespace,
		CgroupParent: opts.CgroupParent,
		Dir:          dir,
		Root:         filepath.Join(dir, "root"),
		State:        filepath.Join(dir, "state"),
		Address:      filepath.Join(dir, "c.sock"),
		TTRPCAddress: filepath.Join(dir, "t.sock"),
		LogPath:      filepath.Join(dir, "containerd.log"),
		done:         make(chan struct{}),
		keep:         opts.Keep,
	}
	// sun_path holds 108 bytes with the NUL; shims dial these paths too.
	if len(c.TTRPCAddress) > 100 {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("containerd %s: socket path %s too long for a unix socket; set a shorter TMPDIR", v.Name, c.TTRPCAddress)
	}
	c.PATH = strings.Join(nonEmpty(opts.ShimDir, v.BinDir,
		"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"), ":")
	c.opts = opts
	if err := c.start(ctx, opts); err != nil {
		_ = c.Stop(context.Background())
		return nil, err
	}
	return c, nil
}

// Restart ends the daemon with sig (SIGTERM: an orderly stop; SIGKILL: a
// crash) and starts it again on the same root, state and sockets, as a
// host's service manager would. Shims and containers are left running.
func (c *Containerd) Restart(ctx context.Context, sig syscall.Signal) error {
	if err := c.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("containerd %s: signal %v: %w", c.Version.Name, sig, err)
	}
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		return fmt.Errorf("containerd %s: still running 30s after %v", c.Version.Name, sig)
	}
	c.done = make(chan struct{})
	return c.start(ctx, c.opts)
}

func nonEmpty(items ...string) []string {
	var out []string
	for _, s := range items {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func (c *Containerd) configTOML(logLevel string, cri *CRIConfig) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version = %d\n", c.Version.ConfigVersion)
	fmt.Fprintf(&b, "root = %q\nstate = %q\n", c.Root, c.State)
	quoted := make([]string, 0, len(c.Version.DisabledPlugins))
	for _, p := range c.Version.DisabledPlugins {
		if cri != nil && slices.Contains(c.Version.CRIPlugins, p) {
			continue
		}
		quoted = append(quoted, strconv.Quote(p))
	}
	fmt.Fprintf(&b, "disabled_plugins = [%s]\n", strings.Join(quoted, ", "))
	fmt.Fprintf(&b, "\n[grpc]\n  address = %q\n", c.Address)
	fmt.Fprintf(&b, "\n[ttrpc]\n  address = %q\n", c.TTRPCAddress)
	fmt.Fprintf(&b, "\n[debug]\n  level = %q\n", logLevel)
	if cri != nil {
		c.writeCRITOML(&b, cri)
	}
	return b.String()
}

// writeCRITOML writes the CRI sections of a version 3 config (containerd
// 2.x, where the CRI is split into an images and a runtime plugin).
func (c *Containerd) writeCRITOML(b *strings.Builder, cri *CRIConfig) {
	const images, runtime = `plugins."io.containerd.cri.v1.images"`, `plugins."io.containerd.cri.v1.runtime"`
	fmt.Fprintf(b, "\n[%s.pinned_images]\n  sandbox = %q\n", images, cri.SandboxImage)
	// restrict_oom_score_adj: the pause container asks for -998, which a
	// root without CAP_SYS_RESOURCE may not set.
	fmt.Fprintf(b, "\n[%s]\n  restrict_oom_score_adj = true\n", runtime)
	// An empty CNI setup of the daemon's own, so that whatever the host has
	// in /etc/cni never applies: the suites run host-network pods only.
	fmt.Fprintf(b, "\n[%s.cni]\n  bin_dirs = [%q]\n  conf_dir = %q\n", runtime,
		filepath.Join(c.Dir, "cni", "bin"), filepath.Join(c.Dir, "cni", "net.d"))
	handlers := make([]string, 0, len(cri.Runtimes))
	for h := range cri.Runtimes {
		handlers = append(handlers, h)
	}
	slices.Sort(handlers)
	for _, h := range handlers {
		fmt.Fprintf(b, "\n[%s.containerd.runtimes.%s]\n  runtime_type = %q\n", runtime, strconv.Quote(h), cri.Runtimes[h])
		if spec := cri.BaseRuntimeSpecs[h]; spec != "" {
			fmt.Fprintf(b, "  base_runtime_spec = %q\n", spec)
		}
		// Only runc's option type has the cgroup driver; CRI reads the
		// driver it reports from there, else guesses from whether systemd
		// runs. Cgroupfs either way: pods get plain cgroup parents.
		opts := cri.Options[h]
		if opts == "" && cri.Runtimes[h] == RuncRuntime {
			opts = "SystemdCgroup = false"
		}
		if opts != "" {
			fmt.Fprintf(b, "  [%s.containerd.runtimes.%s.options]\n", runtime, strconv.Quote(h))
			for _, line := range strings.Split(strings.TrimSpace(opts), "\n") {
				fmt.Fprintf(b, "    %s\n", strings.TrimSpace(line))
			}
		}
	}
}

func (c *Containerd) start(ctx context.Context, opts Options) error {
	cfg := filepath.Join(c.Dir, "config.toml")
	if err := os.WriteFile(cfg, []byte(c.configTOML(opts.LogLevel, opts.CRI)), 0o600); err != nil {
		return fmt.Errorf("containerd %s: write config: %w", c.Version.Name, err)
	}
	// Appended to: a restarted daemon logs after its first life.
	logf, err := os.OpenFile(c.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("containerd %s: create log: %w", c.Version.Name, err)
	}
	defer logf.Close()

	// Not CommandContext: the daemon outlives the ctx of the call that
	// started it and is stopped by Stop.
	cmd := exec.Command(c.Version.Containerd(), "--config", cfg)
	cmd.Dir = c.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(envWithout(os.Environ(), "PATH", "NOTIFY_SOCKET", "CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE"), "PATH="+c.PATH)
	// Own process group, so a ^C to the test does not hit it before Stop;
	// Pdeathsig so a crashed test binary does not leave it running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("containerd %s: start %s: %w", c.Version.Name, cmd.Path, err)
	}
	c.cmd = cmd
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()

	deadline := time.Now().Add(opts.StartTimeout)
	var last Result
	for time.Now().Before(deadline) {
		select {
		case <-c.done:
			return fmt.Errorf("containerd %s exited during startup (%v); log:\n%s", c.Version.Name, c.err, c.LogTail(30))
		case <-ctx.Done():
			return fmt.Errorf("containerd %s: startup: %w", c.Version.Name, ctx.Err())
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		last = c.Ctr(cctx, nil, "version")
		cancel()
		if last.ExitCode == 0 && strings.Contains(last.Stdout, "Server:") {
			if !strings.Contains(last.Stdout, c.Version.VersionMark) {
				return fmt.Errorf("containerd %s: unexpected version:\n%s", c.Version.Name, last.Stdout)
			}
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("containerd %s did not answer within %s: %s\nlog:\n%s", c.Version.Name, opts.StartTimeout, last, c.LogTail(30))
}

func envWithout(env []string, names ...string) []string {
	out := env[:0:0]
next:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

// Ctr runs this daemon's ctr against it, in c.Namespace. ctr stops parsing
// flags at the first positional argument, so flags go before image and id.
func (c *Containerd) Ctr(ctx context.Context, stdin io.Reader, args ...string) Result {
	full := c.CtrArgs(args...)
	// ctr 2.x warns about cgroup v1 on every call otherwise.
	return Run(ctx, stdin, []string{quietCtr}, c.Version.CtrPath(), full...)
}

// CtrArgs is the whole argument list of a ctr command against this
// daemon, in c.Namespace (for a ctr the caller runs itself).
func (c *Containerd) CtrArgs(args ...string) []string {
	return append([]string{"--address", c.Address, "--namespace", c.Namespace}, withFifoDir(args, filepath.Join(c.Dir, "fifo"))...)
}

// withFifoDir gives the ctr commands that make IO fifos (run, tasks exec,
// tasks start; not with a log URI) the daemon's own directory for them: a ctr that loses its
// shim or daemon (the crash and restart cases) leaves its fifos behind,
// which would pile up in the host's /run/containerd/fifo.
func withFifoDir(args []string, dir string) []string {
	// ctr takes no fifo dir beside a log URI (its IO is not fifos then).
	if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--log-uri") }) {
		return args
	}
	n := 0
	switch {
	case len(args) > 0 && args[0] == "run":
		n = 1
	case len(args) > 1 && (args[0] == "tasks" || args[0] == "task" || args[0] == "t") && (args[1] == "exec" || args[1] == "start"):
		n = 2
	default:
		return args
	}
	out := append([]string{}, args[:n]...)
	out = append(out, "--fifo-dir", dir)
	return append(out, args[n:]...)
}

// Pid is the daemon's pid.
func (c *Containerd) Pid() int {
	if c.cmd == nil || c.cmd.Process == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// TaskDir is the bundle directory containerd makes for a container.
func (c *Containerd) TaskDir(id string) string {
	return filepath.Join(c.State, "io.containerd.runtime.v2.task", c.Namespace, id)
}

// WorkDir is the per-container directory under containerd's root.
func (c *Containerd) WorkDir(id string) string {
	return filepath.Join(c.Root, "io.containerd.runtime.v2.task", c.Namespace, id)
}

// LogTail returns the last n lines of the daemon's log.
func (c *Containerd) LogTail(n int) string {
	lines := c.LogLines(func(string) bool { return true })
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// LogLines returns the daemon's log lines that keep accepts. Shim logs are
// copied into it by containerd, so grepping for a container id shows both.
// LogAbout is the daemon's last log lines (shim logs included) that
// mention s, at most max of them, ready to print.
func (c *Containerd) LogAbout(s string, max int) string {
	lines := c.LogLines(func(l string) bool { return strings.Contains(l, s) })
	if len(lines) > max {
		lines = lines[len(lines)-max:]
	}
	return fmt.Sprintf("containerd %s log lines mentioning %s:\n%s", c.Version.Name, s, strings.Join(lines, "\n"))
}

func (c *Containerd) LogLines(keep func(string) bool) []string {
	f, err := os.Open(c.LogPath)
	if err != nil {
		return []string{fmt.Sprintf("(no log: %v)", err)}
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if keep(sc.Text()) {
			out = append(out, sc.Text())
		}
	}
	return out
}

// Stop stops the daemon (SIGTERM, SIGKILL after 10s), then cleans up what
// should not be there any more: shims still serving this daemon are killed
// and mounts under its directory are unmounted. Each of those is returned
// as an error, because a clean run leaves none. The temp dir is removed
// unless Options.Keep was set.
func (c *Containerd) Stop(ctx context.Context) error {
	var errs []error
	if c.cmd != nil && c.cmd.Process != nil {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			errs = append(errs, fmt.Errorf("containerd %s ignored SIGTERM for 10s; killed", c.Version.Name))
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	}
	for _, p := range ProcessesMatching(func(p Proc) bool { return p.HasArgPair("-address", c.Address) }) {
		errs = append(errs, fmt.Errorf("leak: shim still running after containerd %s stopped: pid %d %s", c.Version.Name, p.Pid, p.CmdlineString()))
		_ = syscall.Kill(p.Pid, syscall.SIGKILL)
	}
	if c.Dir != "" {
		mounts, err := MountsUnder(c.Dir)
		if err != nil {
			errs = append(errs, err)
		}
		// Deepest first, so stacked mounts come off in order.
		for i := len(mounts) - 1; i >= 0; i-- {
			errs = append(errs, fmt.Errorf("leak: mount left under %s: %s", c.Dir, mounts[i]))
			if err := syscall.Unmount(mounts[i], syscall.MNT_DETACH); err != nil {
				errs = append(errs, fmt.Errorf("unmount %s: %w", mounts[i], err))
			}
		}
		if !c.keep {
			if err := os.RemoveAll(c.Dir); err != nil {
				errs = append(errs, fmt.Errorf("remove %s: %w", c.Dir, err))
			}
		}
	}
	return errors.Join(errs...)
}
