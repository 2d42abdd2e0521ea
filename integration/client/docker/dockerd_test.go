package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/minishim/containerd-shim-mini-v2/integration"
	"github.com/moby/moby/client"
	"golang.org/x/sys/unix"
)

// defaultDockerd is where hack/install-deps.sh installs dockerd.
const defaultDockerd = "/opt/moby-2.0.0-beta.24/bin/dockerd"

// miniRuntimeName is our runtime's name in daemon.json.
const miniRuntimeName = "mini"

// remapOptions configure a dockerd with userns-remap.
type remapOptions struct {
	user, group string // an existing user other than root, and a group
	first, size int    // its subordinate uid and gid range
}

// dockerdOptions configure startDockerd.
type dockerdOptions struct {
	binary     string
	dir        string // everything of this daemon lives here; short: it holds the socket
	containerd *integration.Containerd
	namespace  string // containerd namespace (and plugins namespace's suffix)
	initPath   string
	remap      *remapOptions
}

// dockerd is one private dockerd started by the suite.
type dockerd struct {
	opts   dockerdOptions
	host   string // unix://.../d.sock
	log    string
	client *client.Client

	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's result, valid after done is closed
}

// startDockerd writes daemon.json, starts dockerd and waits until its API
// answers. On an error the daemon is stopped and its mounts are gone.
func startDockerd(ctx context.Context, opts dockerdOptions) (*dockerd, error) {
	d := &dockerd{
		opts: opts,
		host: "unix://" + filepath.Join(opts.dir, "d.sock"),
		log:  filepath.Join(opts.dir, "dockerd.log"),
		done: make(chan struct{}),
	}
	if err := d.start(ctx); err != nil {
		return nil, errors.Join(err, d.stop())
	}
	return d, nil
}

func (d *dockerd) start(ctx context.Context) error {
	o := d.opts
	for _, sub := range []string{"data", "exec"} {
		if err := os.MkdirAll(filepath.Join(o.dir, sub), 0o711); err != nil {
			return fmt.Errorf("dockerd dirs: %w", err)
		}
	}
	config := map[string]any{
		"runtimes":                     map[string]any{miniRuntimeName: map[string]string{"runtimeType": integration.MiniRuntime}},
		"init-path":                    o.initPath,
		"containerd":                   o.containerd.Address,
		"containerd-namespace":         o.namespace,
		"containerd-plugins-namespace": "plugins-" + o.namespace,
		"data-root":                    filepath.Join(o.dir, "data"),
		"exec-root":                    filepath.Join(o.dir, "exec"),
		"pidfile":                      filepath.Join(o.dir, "dockerd.pid"),
		"hosts":                        []string{d.host},
		// cgroupfs wherever the host's init is: containers land in
		// /minidocker/<id>.
		"exec-opts":     []string{"native.cgroupdriver=cgroupfs"},
		"cgroup-parent": "/" + cgroupParent,
		// No host networking set up for us: containers use the host's
		// network or none.
		"iptables":       false,
		"ip6tables":      false,
		"bridge":         "none",
		"ip-forward":     false,
		"userland-proxy": false,
		"debug":          true,
	}
	if o.remap != nil {
		config["userns-remap"] = o.remap.user + ":" + o.remap.group
	}
	raw, err := json.MarshalIndent(config, "", "  ")
	if err != nil {
		return err
	}
	configPath := filepath.Join(o.dir, "daemon.json")
	if err := os.WriteFile(configPath, raw, 0o644); err != nil {
		return fmt.Errorf("write daemon.json: %w", err)
	}
	logf, err := os.OpenFile(d.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("dockerd log: %w", err)
	}
	defer logf.Close()

	args := []string{o.binary, "--config-file", configPath}
	if o.remap != nil {
		if args, err = d.remapCommand(args); err != nil {
			return err
		}
	}
	// Not CommandContext: the daemon outlives the call that starts it.
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = o.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// containerd's PATH: our shim first; dockerd looks up nothing else.
	cmd.Env = []string{"PATH=" + o.containerd.PATH, "HOME=" + o.dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", o.binary, err)
	}
	d.cmd = cmd
	go func() {
		d.err = cmd.Wait()
		close(d.done)
	}()

	d.client, err = client.New(client.WithHost(d.host), client.WithAPIVersionNegotiation())
	if err != nil {
		return fmt.Errorf("docker client for %s: %w", d.host, err)
	}
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-d.done:
			return fmt.Errorf("dockerd exited during startup (%v); log:\n%s", d.err, d.logTail(30))
		case <-ctx.Done():
			return fmt.Errorf("dockerd startup: %w", ctx.Err())
		default:
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, last = d.client.Ping(pctx, client.PingOptions{})
		cancel()
		if last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("dockerd did not answer within 60s: %v; log:\n%s", last, d.logTail(30))
}

// remapCommand wraps dockerd's command line for userns-remap. dockerd
// reads the remap user's ranges from /etc/subuid and /etc/subgid, which
// this host's are not to gain: the daemon runs in a mount namespace of its
// own where /etc is an overlay holding them. Its mounts must still reach
// the host (the shim mounts nothing dockerd made, but dockerd's graph
// driver mounts the rootfs it hands over, and its network namespace files
// are bind mounts): its dir is bound onto itself and shared first, and
// only the new namespace's root is made private, so the overlay stays
// inside.
func (d *dockerd) remapCommand(args []string) ([]string, error) {
	o := d.opts
	upper, work := filepath.Join(o.dir, "etc", "upper"), filepath.Join(o.dir, "etc", "work")
	for _, dir := range []string{upper, work} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("remap /etc overlay: %w", err)
		}
	}
	// dockerd looks both files up by the user's name, not the group's.
	line := fmt.Sprintf("%s:%d:%d\n", o.remap.user, o.remap.first, o.remap.size)
	for _, f := range []string{"subuid", "subgid"} {
		if err := os.WriteFile(filepath.Join(upper, f), []byte(line), 0o644); err != nil {
			return nil, fmt.Errorf("remap /etc overlay: %w", err)
		}
	}
	if err := unix.Mount(o.dir, o.dir, "", unix.MS_BIND, ""); err != nil {
		return nil, fmt.Errorf("bind %s: %w", o.dir, err)
	}
	if err := unix.Mount("", o.dir, "", unix.MS_SHARED, ""); err != nil {
		return nil, fmt.Errorf("make %s shared: %w", o.dir, err)
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return nil, fmt.Errorf("userns-remap needs util-linux's unshare: %w", err)
	}
	script := fmt.Sprintf(`set -e
mount --make-private /
mount -t overlay overlay -o lowerdir=/etc,upperdir=%s,workdir=%s /etc
exec "$@"`, upper, work)
	// --propagation unchanged: util-linux would otherwise make every mount
	// private, the shared dir too.
	return append([]string{unshare, "--mount", "--propagation", "unchanged", "--", "/bin/sh", "-c", script, "sh"}, args...), nil
}

// stop ends dockerd (SIGTERM, then SIGKILL after 30 s) and removes what
// mounts it left under its dir (its data root's bind and network namespace
// files outlive it).
func (d *dockerd) stop() error {
	var errs []error
	if d.client != nil {
		_ = d.client.Close()
	}
	if d.cmd != nil {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(30 * time.Second):
			errs = append(errs, fmt.Errorf("dockerd still running 30s after SIGTERM; killed"))
			_ = d.cmd.Process.Kill()
			<-d.done
		}
	}
	mounts, err := integration.MountsUnder(d.opts.dir)
	if err != nil {
		errs = append(errs, err)
	}
	// Innermost first; the dir's own bind last.
	for _, m := range slices.Backward(mounts) {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	return errors.Join(errs...)
}

func (d *dockerd) logTail(n int) string {
	raw, err := os.ReadFile(d.log)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
