package shim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/minishim/containerd-shim-mini-v2/linux"
	"github.com/minishim/containerd-shim-mini-v2/linux/initproc"
	"github.com/minishim/containerd-shim-mini-v2/runtimeopts"
)

// runStart is the `start` action: find or create the shim's socket, launch
// the daemon on it, and tell containerd where it is in the format its
// version expects. Nothing but that answer may reach stdout or stderr on
// success: containerd 2.x reads both as one stream.
func runStart(ctx context.Context, o *options, stdin io.Reader, stdout io.Writer) (retErr error) {
	input, err := readLimited(stdin, maxBootstrapStdin)
	if err != nil {
		return fmt.Errorf("read start parameters from stdin: %w", err)
	}
	req := parseStartInput(input, o.id, o.namespace)
	bundle, err := o.bundleDir()
	if err != nil {
		return err
	}
	ropts, err := decodeStartOptions(req.runtimeOptions())
	if err != nil {
		return err
	}
	group, err := linux.ShimGroup(bundle, o.id, ropts.ShimGroup)
	if err != nil {
		return err
	}
	containerdAddress := req.containerdAddress(o.address)
	if group.AllNamespaces && req.bootstrap == nil {
		// containerd before 2.3 (no bootstrap protocol) does not name the
		// namespace in each request (1.6 was seen not to), so one shim
		// cannot tell two namespaces' containers apart: the node's
		// grouping is the namespace's there.
		group.Name, group.AllNamespaces = linux.NamespaceGroupName, false
	}
	path, err := groupSocketPath(req.socketDir(), containerdAddress, o.namespace, group)
	if err != nil {
		return err
	}
	address := socketAddress(path)

	l, err := listenSocket(path)
	switch {
	case errors.Is(err, errShimRunning):
		// Another container of the same group: its shim serves this one too.
		if err := writeFileAtomic(filepath.Join(bundle, addressFileName), []byte(address)); err != nil {
			return err
		}
		return writeStartOutput(stdout, req, address)
	case err != nil:
		return err
	}
	defer l.Close() // our copy only: the daemon holds its own
	defer func() {
		if retErr != nil {
			os.Remove(path)
		}
	}()

	daemon, err := launchDaemon(o, req, l, bundle, path, containerdAddress)
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			daemon.Kill()
			daemon.Wait()
			return
		}
		daemon.Release()
	}()
	// Best effort, as the shim still works without it: the OOM killer
	// should prefer the shim to containerd, yet not to the containers.
	_ = adjustOOMScore(os.Getppid(), daemon.Pid)
	// runc-v2's ShimCgroup option: the daemon (not its containers) runs
	// in that cgroup.
	if ropts.ShimCgroup != "" {
		if err := linux.JoinCgroup("runtime option ShimCgroup", ropts.ShimCgroup, daemon.Pid); err != nil {
			return err
		}
	}

	if err := writeFileAtomic(filepath.Join(bundle, addressFileName), []byte(address)); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(bundle, shimPidFileName), []byte(strconv.Itoa(daemon.Pid))); err != nil {
		return err
	}
	return writeStartOutput(stdout, req, address)
}

func writeStartOutput(w io.Writer, req startRequest, address string) error {
	out, err := req.encodeStartOutput(address)
	if err != nil {
		return err
	}
	if _, err := w.Write(out); err != nil {
		return fmt.Errorf("write start result: %w", err)
	}
	return nil
}

// launchDaemon re-executes this binary without an action, detached in its
// own session, serving the listener l as fd 3. It does not wait for it.
func launchDaemon(o *options, req startRequest, l *net.UnixListener, bundle, socket, containerdAddress string) (*os.Process, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	f, err := l.File()
	if err != nil {
		return nil, fmt.Errorf("socket %s as file: %w", socket, err)
	}
	defer f.Close()

	if err := initproc.CloexecExtraFds(); err != nil {
		return nil, err
	}
	cmd := exec.Command(self, o.daemonArgs(socket, containerdAddress, o.debug || req.debug())...)
	cmd.Dir = bundle
	cmd.Env = daemonEnv(os.Environ(), req, o.namespace, containerdAddress)
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// Stdio stays nil (/dev/null): containerd waits for EOF on start's
	// output, which a daemon holding it open would never give.
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("launch shim daemon %s: %w", self, err)
	}
	return cmd.Process, nil
}

// daemonEnv passes our environment on, filling in what containerd 2.3+
// sends only in the bootstrap params.
func daemonEnv(env []string, req startRequest, namespace, containerdAddress string) []string {
	set := func(key, value string) {
		if value == "" {
			return
		}
		for _, kv := range env {
			if strings.HasPrefix(kv, key+"=") && len(kv) > len(key)+1 {
				return
			}
		}
		env = append(env, key+"="+value)
	}
	set(envTTRPCAddress, req.bootstrap.GetContainerdTtrpcAddress())
	set(envGRPCAddress, containerdAddress)
	set(envNamespace, namespace)
	return env
}

// adjustOOMScore gives pid the oom_score_adj of parent plus one.
func adjustOOMScore(parent, pid int) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", parent))
	if err != nil {
		return fmt.Errorf("read oom score of %d: %w", parent, err)
	}
	score, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("parse oom score of %d: %w", parent, err)
	}
	score = min(score+1, 1000)
	p := fmt.Sprintf("/proc/%d/oom_score_adj", pid)
	if err := os.WriteFile(p, []byte(strconv.Itoa(score)), 0); err != nil {
		return fmt.Errorf("set oom score of %d: %w", pid, err)
	}
	return nil
}

// writeFileAtomic writes data to path through a rename, so a reader never
// sees half of it.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rename %s to %s: %w", tmp, path, err)
	}
	return nil
}

// decodeStartOptions reads the runtime options among a start's
// extensions (the last of them wins, as containerd sends one); none is
// the defaults.
func decodeStartOptions(opts []*anypb.Any) (*runtimeopts.Options, error) {
	var a *anypb.Any
	for _, o := range opts {
		if runtimeopts.Recognized(o) {
			a = o
		}
	}
	return runtimeopts.Decode(a)
}
