package seccomp

import (
	"encoding/json"
	"fmt"
	"net"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// listenerTimeout bounds connecting and sending to a listener, which runs
// outside our control.
const listenerTimeout = 10 * time.Second

// SendToListener takes the user notification fd a container process got
// from its filter (fd is its number in process pid, which must still be
// waiting for our answer) and hands it to the profile's listener at path,
// with the process's state: one message of ContainerProcessState JSON
// carrying the fd, as runc sends it.
func SendToListener(path string, pid, fd int, state specs.ContainerProcessState) error {
	if path == "" {
		return fmt.Errorf("linux.seccomp.listenerPath is not set: %w", errdefs.ErrInvalidArgument)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("seccomp listener fd: pidfd_open %d: %w", pid, err)
	}
	own, err := unix.PidfdGetfd(pidfd, fd, 0)
	unix.Close(pidfd)
	if err != nil {
		return fmt.Errorf("seccomp listener fd: take fd %d of process %d: %w", fd, pid, err)
	}
	defer unix.Close(own)

	state.Fds = []string{specs.SeccompFdName}
	data, err := json.Marshal(state)
	if err != nil {
		return err
	}
	c, err := net.DialTimeout("unix", path, listenerTimeout)
	if err != nil {
		return fmt.Errorf("connect to the seccomp agent at linux.seccomp.listenerPath %s: %w", path, err)
	}
	defer c.Close()
	conn := c.(*net.UnixConn)
	_ = conn.SetDeadline(time.Now().Add(listenerTimeout))
	if _, _, err := conn.WriteMsgUnix(data, unix.UnixRights(own), nil); err != nil {
		return fmt.Errorf("send the seccomp listener fd to %s: %w", path, err)
	}
	return nil
}
