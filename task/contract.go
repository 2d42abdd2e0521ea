package task

import (
	"context"
	"os/exec"

	"google.golang.org/protobuf/proto"

	"github.com/minishim/containerd-shim-mini-v2/process"
)

// Publisher sends an event of a containerd namespace to containerd.
// Publish must not block the caller: implementations queue the event and
// retry delivery.
type Publisher interface {
	Publish(ctx context.Context, namespace, topic string, event proto.Message)
}

// Monitor is the shim's subreaper seen from the task service. Exits of the
// shim's children (and of orphans reparented to it) all arrive through it.
type Monitor interface {
	// Start starts cmd and returns a channel that receives its exit. The
	// reaper must not lose an exit that happens before Start returns.
	Start(cmd *exec.Cmd) (<-chan process.Exit, error)
	// Subscribe returns every exit the reaper sees, including the ones
	// delivered to Start's channels, until cancel is called.
	Subscribe() (exits <-chan process.Exit, cancel func())
}

// Config is what the shim hands the task service.
type Config struct {
	// Namespace is the containerd namespace the shim was started for, of
	// requests that name none; a shim shared by the node serves others
	// too, each request naming its own.
	Namespace string
	Publisher Publisher
	Monitor   Monitor
	// ShimPid is the shim daemon's pid, which Connect reports.
	ShimPid int
	// Shutdown is called once Shutdown was requested and no container is
	// left: the shim then stops serving, removes its socket and exits.
	Shutdown func()
}
