// Package criu drives CRIU in its service mode (`criu swrk`) over its RPC
// protocol, for checkpoint and restore: one criu process per request, the
// request sent over a SOCK_SEQPACKET socketpair, notifications answered as
// they come (with the file descriptors CRIU passes along), criu's exit
// collected through the caller's reaper. The messages are go-criu's rpc
// types; the swrk loop is ours, since the restore needs criu's stdio, extra
// files and the descriptors notifications carry, which go-criu's client
// does not give.
package criu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"

	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// MinVersion is the oldest CRIU this runtime drives: 3.14, the first to
// freeze a cgroup v2 tree and to know time namespaces (runc asks as much
// for those).
const MinVersion = 31400

// Starter starts cmd and delivers its exit status; the shim's reaper
// provides it (nothing here may call cmd.Wait). An alias, so linux's
// starter fits as it is.
type Starter = func(cmd *exec.Cmd) (<-chan int, error)

// Client runs criu.
type Client struct {
	// Path of the criu binary; "criu" is looked up on PATH.
	Path  string
	Start Starter
}

// Notification is one script notification of CRIU's ("post-dump",
// "setup-namespaces", "post-restore", "orphan-pts-master", ...), with the
// pid it names where it names one and the descriptors that came with it,
// which the handler owns.
type Notification struct {
	Script string
	Pid    int
	Files  []*os.File
}

// Request is one request to one criu process.
type Request struct {
	Type rpc.CriuReqType
	Opts *rpc.CriuOpts
	// Stdin, Stdout, Stderr are criu's own (nil: /dev/null); a restore
	// hands them to the restored tree through inherit_fd.
	Stdin, Stdout, Stderr *os.File
	// ExtraFiles are criu's descriptors from 4 on (3 is the socket).
	ExtraFiles []*os.File
	// Started runs with criu's pid before the request is sent (a restore
	// puts criu into the container's cgroup there).
	Started func(pid int) error
	// Notify handles each notification; nil acknowledges them all.
	Notify func(n Notification) error
}

// Version is criu's version as major*10000 + minor*100 + sublevel; a
// build from git counts as the next minor release, as runc counts it.
func (c Client) Version(ctx context.Context) (int, error) {
	resp, err := c.Do(ctx, Request{Type: rpc.CriuReqType_VERSION})
	if err != nil {
		return 0, err
	}
	v := resp.GetVersion()
	if v == nil {
		return 0, errors.New("criu answered the version request without one (CRIU older than 3.0)")
	}
	n := int(v.GetMajorNumber())*10000 + int(v.GetMinorNumber())*100 + int(v.GetSublevel())
	if v.GetGitid() != "" {
		n = n - n%100 + 100
	}
	return n, nil
}

// CheckVersion fails with FailedPrecondition, naming what is missing,
// where criu is not installed or older than MinVersion.
func (c Client) CheckVersion(ctx context.Context) error {
	path, err := c.binary()
	if err != nil {
		return err
	}
	v, err := c.Version(ctx)
	if err != nil {
		return fmt.Errorf("criu %s: version: %w", path, err)
	}
	return checkVersion(path, v)
}

// checkVersion refuses a criu older than MinVersion.
func checkVersion(path string, v int) error {
	if v < MinVersion {
		return fmt.Errorf("criu %s is version %s; checkpoint and restore need CRIU %s or later: %w", path, VersionString(v), VersionString(MinVersion), errdefs.ErrFailedPrecondition)
	}
	return nil
}

// VersionString renders a version number as "3.17.1".
func VersionString(v int) string {
	return fmt.Sprintf("%d.%d.%d", v/10000, v/100%100, v%100)
}

func (c Client) binary() (string, error) {
	name := c.Path
	if name == "" {
		name = "criu"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("checkpoint and restore need CRIU (%s or later), which is not installed here (%v): %w", VersionString(MinVersion), err, errdefs.ErrFailedPrecondition)
	}
	return path, nil
}

// Do starts criu swrk, sends req, answers its notifications and returns
// its final answer. A request CRIU refuses fails with its error number and
// message; the caller knows where its log went.
func (c Client) Do(ctx context.Context, req Request) (*rpc.CriuResp, error) {
	path, err := c.binary()
	if err != nil {
		return nil, err
	}
	fds, err := unix.Socketpair(unix.AF_LOCAL, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("criu socketpair: %w", err)
	}
	local := os.NewFile(uintptr(fds[0]), "criu-client")
	remote := os.NewFile(uintptr(fds[1]), "criu-server")
	defer local.Close()

	cmd := exec.Command(path, "swrk", "3")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = req.Stdin, req.Stdout, req.Stderr
	cmd.ExtraFiles = append([]*os.File{remote}, req.ExtraFiles...)
	// Its own process group: a signal meant for the shim's group is not
	// criu's.
	cmd.SysProcAttr = &unix.SysProcAttr{Setpgid: true}
	exited, err := c.Start(cmd)
	remote.Close()
	if err != nil {
		return nil, fmt.Errorf("start %s swrk: %w", path, err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	// Whatever happens below, criu is not left behind: the socket's close
	// ends a criu waiting for a request, and a kill ends one still working.
	finished := false
	defer func() {
		if !finished {
			_ = unix.Kill(pid, unix.SIGKILL)
			<-exited
		}
	}()
	// A cancelled request kills criu, which ends the wait for its answer.
	stop := context.AfterFunc(ctx, func() { _ = unix.Kill(pid, unix.SIGKILL) })
	defer stop()
	if req.Started != nil {
		if err := req.Started(pid); err != nil {
			return nil, err
		}
	}
	resp, err := converse(ctx, local, &rpc.CriuReq{Type: req.Type.Enum(), Opts: req.Opts}, req.Notify)
	if err != nil {
		return nil, err
	}
	// Done: criu exits once the socket closes.
	local.Close()
	finished = true
	select {
	case status := <-exited:
		if status != 0 {
			return nil, fmt.Errorf("criu exited with status %d after answering", status)
		}
	case <-ctx.Done():
		_ = unix.Kill(pid, unix.SIGKILL)
		<-exited
		return nil, ctx.Err()
	}
	return resp, nil
}

// converse sends req and reads answers until the final one.
func converse(ctx context.Context, conn *os.File, req *rpc.CriuReq, notify func(Notification) error) (*rpc.CriuResp, error) {
	raw, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode criu request: %w", err)
	}
	if _, err := conn.Write(raw); err != nil {
		return nil, fmt.Errorf("send criu request: %w", err)
	}
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4*16))
	// A notification the caller failed is refused; CRIU then undoes its
	// work (kills what it restored, thaws what it froze) before its final
	// answer, which is waited for.
	var refused error
	for ctx.Err() == nil {
		n, oobn, _, _, err := unix.Recvmsg(int(conn.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read criu answer: %w", err)
		}
		files, ferr := receivedFiles(oob[:oobn])
		if n == 0 {
			closeFiles(files)
			if refused != nil {
				return nil, refused
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, errors.New("criu closed the connection without an answer (it crashed?)")
		}
		if n == len(buf) {
			closeFiles(files)
			return nil, errors.New("criu answer larger than 64 KiB")
		}
		resp := &rpc.CriuResp{}
		if err := proto.Unmarshal(buf[:n], resp); err != nil {
			closeFiles(files)
			return nil, fmt.Errorf("decode criu answer: %w", err)
		}
		if ferr != nil {
			closeFiles(files)
			return nil, ferr
		}
		if refused != nil && resp.GetType() != rpc.CriuReqType_NOTIFY {
			closeFiles(files)
			return nil, refused
		}
		if !resp.GetSuccess() {
			closeFiles(files)
			msg := resp.GetCrErrmsg()
			if msg == "" {
				msg = "see its log"
			}
			return nil, fmt.Errorf("criu %s failed: %s (errno %d)", resp.GetType(), msg, resp.GetCrErrno())
		}
		if resp.GetType() != rpc.CriuReqType_NOTIFY {
			closeFiles(files)
			return resp, nil
		}
		n2 := Notification{Script: resp.GetNotify().GetScript(), Pid: int(resp.GetNotify().GetPid()), Files: files}
		ok := true
		var herr error
		if notify != nil {
			herr = notify(n2)
			ok = herr == nil
		} else {
			closeFiles(files)
		}
		ack, err := proto.Marshal(&rpc.CriuReq{Type: rpc.CriuReqType_NOTIFY.Enum(), NotifySuccess: proto.Bool(ok)})
		if err != nil {
			return nil, err
		}
		if _, err := conn.Write(ack); err != nil {
			return nil, fmt.Errorf("answer criu's %s notification: %w", n2.Script, err)
		}
		if herr != nil && refused == nil {
			refused = fmt.Errorf("criu's %s notification: %w", n2.Script, herr)
		}
	}
	return nil, ctx.Err()
}

func receivedFiles(oob []byte) ([]*os.File, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("criu answer's control message: %w", err)
	}
	var files []*os.File
	for i := range msgs {
		fds, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			continue
		}
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), "criu-fd-"+strconv.Itoa(fd)))
		}
	}
	return files, nil
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
