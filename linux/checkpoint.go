package linux

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"github.com/containerd/errdefs"
	"github.com/minishim/containerd-shim-mini-v2/linux/initproc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// CheckpointOpts is what a checkpoint request asks for: containerd's runc
// CheckpointOptions, as runc-v2 reads them.
type CheckpointOpts struct {
	// ImagePath receives CRIU's images (the request's path).
	ImagePath string
	// CopyTo, when set, gets a copy of them: the options' own image path,
	// where containerd 1.6 (for a runtime not named runc) has the dump go
	// to a directory of its own, which it archives, instead.
	CopyTo string
	// WorkPath receives CRIU's log and scratch files and is kept; empty:
	// a directory in the bundle, removed afterwards.
	WorkPath string
	// ParentPath is an earlier dump's image directory (relative to
	// ImagePath, as CRIU takes it) whose memory this dump only adds to.
	ParentPath string
	// Exit ends the container after the dump; else it runs on.
	Exit                bool
	OpenTCP             bool
	ExternalUnixSockets bool
	Terminal            bool
	FileLocks           bool
	// EmptyNamespaces are restored empty ("network").
	EmptyNamespaces []string
	// CgroupsMode is CRIU's: "soft", "full", "strict", "ignore" or ""
	// (CRIU's default).
	CgroupsMode string
}

// RestoreOpts is a checkpoint to bring back at Start.
type RestoreOpts struct {
	// ImagePath holds a checkpoint this runtime made.
	ImagePath string
	// WorkPath receives CRIU's log; empty: a directory in the bundle.
	WorkPath string
	// Stdin, Stdout and Stderr replace the dumped process's stdio pipes.
	Stdin, Stdout, Stderr *os.File
}

// checkpointRecordFile is what this runtime keeps beside CRIU's images: a
// restore has to repeat some of the dump's choices and to find the
// dumped process's stdio again.
const checkpointRecordFile = "mini-checkpoint.json"

type checkpointRecord struct {
	// Descriptors are what init's fds 0, 1 and 2 were ("pipe:[123]",
	// "/dev/null"): CRIU names a pipe by its inode, and the restore hands
	// it the new one under that name.
	Descriptors    [3]string `json:"descriptors"`
	FileLocks      bool      `json:"file_locks,omitempty"`
	TCPEstablished bool      `json:"tcp_established,omitempty"`
	ExtUnixSk      bool      `json:"ext_unix_sk,omitempty"`
	ShellJob       bool      `json:"shell_job,omitempty"`
	EmptyNs        uint32    `json:"empty_ns,omitempty"`
}

// criuOpts are the CRIU options a dump and its restore share: where the
// images, the work dir and the log are, the root, and the dump's choices.
func (rec checkpointRecord) criuOpts(images, work *os.File, logFile, root string) *rpc.CriuOpts {
	return &rpc.CriuOpts{
		ImagesDirFd:     proto.Int32(int32(images.Fd())),
		WorkDirFd:       proto.Int32(int32(work.Fd())),
		LogLevel:        proto.Int32(criuLogLevel),
		LogFile:         proto.String(logFile),
		Root:            proto.String(root),
		ManageCgroups:   proto.Bool(true),
		NotifyScripts:   proto.Bool(true),
		OrphanPtsMaster: proto.Bool(true),
		ShellJob:        proto.Bool(rec.ShellJob),
		TcpEstablished:  proto.Bool(rec.TCPEstablished),
		ExtUnixSk:       proto.Bool(rec.ExtUnixSk),
		FileLocks:       proto.Bool(rec.FileLocks),
		EmptyNs:         proto.Uint32(rec.EmptyNs),
	}
}

func writeCheckpointRecord(dir string, rec checkpointRecord) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, checkpointRecordFile), data, 0o600); err != nil {
		return fmt.Errorf("write checkpoint record: %w", err)
	}
	return nil
}

func readCheckpointRecord(dir string) (checkpointRecord, error) {
	var rec checkpointRecord
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return rec, fmt.Errorf("checkpoint directory %s does not exist: %w", dir, errdefs.ErrNotFound)
	} else if err != nil {
		return rec, fmt.Errorf("checkpoint directory: %w", err)
	}
	data, err := os.ReadFile(filepath.Join(dir, checkpointRecordFile))
	if os.IsNotExist(err) {
		return rec, fmt.Errorf("%s holds no checkpoint made by this runtime (no %s): %w", dir, checkpointRecordFile, errdefs.ErrInvalidArgument)
	}
	if err != nil {
		return rec, fmt.Errorf("read checkpoint record: %w", err)
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return rec, fmt.Errorf("checkpoint record %s: %v: %w", filepath.Join(dir, checkpointRecordFile), err, errdefs.ErrInvalidArgument)
	}
	return rec, nil
}

// emptyNamespaceFlags maps CheckpointOpts.EmptyNamespaces to CRIU's mask;
// like runc, only the network namespace can be restored empty, and it
// always is: its devices and rules are the network plugin's to set up
// (runc's checkpoint always asks so), and dumping them needs iptables.
func emptyNamespaceFlags(names []string) (uint32, error) {
	for _, n := range names {
		if n != "network" {
			return 0, fmt.Errorf("checkpoint options: empty namespace %q: only \"network\" can be restored empty: %w", n, errdefs.ErrInvalidArgument)
		}
	}
	return unix.CLONE_NEWNET, nil
}

// cgroupsMode maps CheckpointOpts.CgroupsMode to CRIU's; nil: CRIU's
// default.
func cgroupsMode(mode string) (*rpc.CriuCgMode, error) {
	var m rpc.CriuCgMode
	switch mode {
	case "":
		return nil, nil
	case "soft":
		m = rpc.CriuCgMode_SOFT
	case "full":
		m = rpc.CriuCgMode_FULL
	case "strict":
		m = rpc.CriuCgMode_STRICT
	case "ignore":
		m = rpc.CriuCgMode_IGNORE
	default:
		return nil, fmt.Errorf("checkpoint options: cgroups mode %q: want soft, full, strict or ignore: %w", mode, errdefs.ErrInvalidArgument)
	}
	return &m, nil
}

// externalBindMounts are the spec's bind mounts: CRIU cannot dump what
// they show (it lives outside the container), so each is named to it by
// its destination, and bound again from the spec's source at restore.
// Destinations are cleaned; the dump and the restore name them alike.
func externalBindMounts(spec *specs.Spec) map[string]string {
	out := map[string]string{}
	for _, m := range spec.Mounts {
		if initproc.IsBindMount(m) {
			out[filepath.Clean(m.Destination)] = m.Source
		}
	}
	return out
}

// restoreMountpoints are the destinations a restore must find in the
// rootfs before CRIU mounts there: every spec mount's, but those under a
// tmpfs (CRIU makes the tmpfs, with its content) and cgroup mounts (made
// inside the sysfs CRIU mounts). A bind of a file needs a file.
func restoreMountpoints(spec *specs.Spec) (dirs, files []string) {
	var tmpfs []string
	for _, m := range spec.Mounts {
		dest := filepath.Clean(m.Destination)
		if slices.ContainsFunc(tmpfs, func(t string) bool { return strings.HasPrefix(dest, t+"/") }) {
			continue
		}
		switch {
		case m.Type == "tmpfs":
			tmpfs = append(tmpfs, dest)
			dirs = append(dirs, dest)
		case m.Type == "cgroup" || m.Type == "cgroup2":
		case initproc.IsBindMount(m):
			if fi, err := os.Stat(m.Source); err == nil && !fi.IsDir() {
				files = append(files, dest)
			} else {
				dirs = append(dirs, dest)
			}
		default:
			dirs = append(dirs, dest)
		}
	}
	return dirs, files
}
