package task

import (
	"context"
	"encoding/json"
	"fmt"

	eventstypes "github.com/containerd/containerd/api/events"
	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/minishim/containerd-shim-mini-v2/process"
)

// Pause freezes every process of the container.
func (s *Service) Pause(ctx context.Context, r *taskv3.PauseRequest) (*emptypb.Empty, error) {
	c, err := s.get(ctx, r.ID)
	if err != nil {
		return nil, toGRPC(err)
	}
	// Not while a checkpoint runs: CRIU freezes and thaws the cgroup.
	c.init.lifecycle.Lock()
	err = c.init.p.Pause()
	c.init.lifecycle.Unlock()
	if err != nil {
		return nil, toGRPC(err)
	}
	s.cfg.Publisher.Publish(ctx, c.namespace, topicPaused, &eventstypes.TaskPaused{ContainerID: c.id})
	return &emptypb.Empty{}, nil
}

// Resume thaws a paused container.
func (s *Service) Resume(ctx context.Context, r *taskv3.ResumeRequest) (*emptypb.Empty, error) {
	c, err := s.get(ctx, r.ID)
	if err != nil {
		return nil, toGRPC(err)
	}
	c.init.lifecycle.Lock()
	err = c.init.p.Resume()
	c.init.lifecycle.Unlock()
	if err != nil {
		return nil, toGRPC(err)
	}
	s.cfg.Publisher.Publish(ctx, c.namespace, topicResumed, &eventstypes.TaskResumed{ContainerID: c.id})
	return &emptypb.Empty{}, nil
}

// Update changes the resources of a live container.
func (s *Service) Update(ctx context.Context, r *taskv3.UpdateTaskRequest) (*emptypb.Empty, error) {
	c, err := s.get(ctx, r.ID)
	if err != nil {
		return nil, toGRPC(err)
	}
	switch st := c.init.p.Status(); st {
	case process.Created, process.Running, process.Paused:
	default:
		return nil, toGRPC(fmt.Errorf("update container %s: it is %s: %w", r.ID, st, errdefs.ErrFailedPrecondition))
	}
	if r.Resources == nil || len(r.Resources.GetValue()) == 0 {
		return nil, toGRPC(fmt.Errorf("update container %s: no resources given: %w", r.ID, errdefs.ErrInvalidArgument))
	}
	var res specs.LinuxResources
	if err := json.Unmarshal(r.Resources.GetValue(), &res); err != nil {
		return nil, toGRPC(fmt.Errorf("update container %s: resources are not a runtime-spec LinuxResources: %v: %w", r.ID, err, errdefs.ErrInvalidArgument))
	}
	if err := c.linux.Update(&res); err != nil {
		return nil, toGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

// Stats reports the container's cgroup metrics (v1 or v2 Metrics).
func (s *Service) Stats(ctx context.Context, r *taskv3.StatsRequest) (*taskv3.StatsResponse, error) {
	c, err := s.get(ctx, r.ID)
	if err != nil {
		return nil, toGRPC(err)
	}
	m, err := c.linux.Stats()
	if err != nil {
		return nil, toGRPC(err)
	}
	a, err := typeurl.MarshalAnyToProto(m)
	if err != nil {
		return nil, toGRPC(fmt.Errorf("encode stats of %s: %w", r.ID, err))
	}
	return &taskv3.StatsResponse{Stats: a}, nil
}
