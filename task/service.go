// Package task serves containerd's Task API (v2 and v3) over ttrpc.
package task

import (
	"context"

	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
)

// Service implements the Task API for every container of one shim.
type Service struct {
	cfg Config
}

// NewService builds the task service; it starts consuming exits from
// cfg.Monitor at once.
func NewService(ctx context.Context, cfg Config) (*Service, error) {
	return &Service{cfg: cfg}, nil
}

// RegisterTTRPC registers the service as containerd.task.v2.Task and
// containerd.task.v3.Task.
func (s *Service) RegisterTTRPC(srv *ttrpc.Server) {}

// Cleanup is what `containerd-shim-mini-v2 delete` runs when containerd lost
// the shim: kill what is left of the container, unmount, remove its cgroup
// and state, and say how it ended.
func Cleanup(ctx context.Context, namespace, id, bundle string) (*taskv3.DeleteResponse, error) {
	return nil, errdefs.ErrNotImplemented
}
