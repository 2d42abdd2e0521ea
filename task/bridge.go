package task

import (
	"context"
	"fmt"

	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// The task v2 and v3 services carry the same messages under different proto
// packages, so identical bytes on the wire. containerd 1.x and 2.0-2.2 call
// v2, 2.3+ calls v3. The service is written once against v3; this bridge
// re-encodes v2 messages, which costs a marshal per call and keeps a single
// code path.
type v2Bridge struct{ s *Service }

func recode(from, to proto.Message) error {
	data, err := proto.Marshal(from)
	if err != nil {
		return err
	}
	return proto.Unmarshal(data, to)
}

func bridge[O2 any, PO2 interface {
	*O2
	proto.Message
}, I3 any, PI3 interface {
	*I3
	proto.Message
}, O3 proto.Message](ctx context.Context, in proto.Message, fn func(context.Context, PI3) (O3, error)) (PO2, error) {
	req := PI3(new(I3))
	if err := recode(in, req); err != nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("re-encode task v2 request: %w", err))
	}
	resp, err := fn(ctx, req)
	if err != nil {
		return nil, err
	}
	out := PO2(new(O2))
	if err := recode(resp, out); err != nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("re-encode task v2 response: %w", err))
	}
	return out, nil
}

func (b v2Bridge) State(ctx context.Context, r *taskv2.StateRequest) (*taskv2.StateResponse, error) {
	return bridge[taskv2.StateResponse](ctx, r, b.s.State)
}

func (b v2Bridge) Create(ctx context.Context, r *taskv2.CreateTaskRequest) (*taskv2.CreateTaskResponse, error) {
	return bridge[taskv2.CreateTaskResponse](ctx, r, b.s.Create)
}

func (b v2Bridge) Start(ctx context.Context, r *taskv2.StartRequest) (*taskv2.StartResponse, error) {
	return bridge[taskv2.StartResponse](ctx, r, b.s.Start)
}

func (b v2Bridge) Delete(ctx context.Context, r *taskv2.DeleteRequest) (*taskv2.DeleteResponse, error) {
	return bridge[taskv2.DeleteResponse](ctx, r, b.s.Delete)
}

func (b v2Bridge) Pids(ctx context.Context, r *taskv2.PidsRequest) (*taskv2.PidsResponse, error) {
	return bridge[taskv2.PidsResponse](ctx, r, b.s.Pids)
}

func (b v2Bridge) Pause(ctx context.Context, r *taskv2.PauseRequest) (*emptypb.Empty, error) {
	return bridge[emptypb.Empty](ctx, r, b.s.Pause)
}

func (b v2Bridge) Resume(ctx context.Context, r *taskv2.ResumeRequest) (*emptypb.Empty, error) {
	return bridge[emptypb.Empty](ctx, r, b.s.Resume)
}

func (b v2Bridge) Checkpoint(ctx context.Context, r *taskv2.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return bridge[emptypb.Empty](ctx, r, b.s.Checkpoint)
}

func (b v2Bridge) Kill(ctx context.Context, r *taskv2.KillRequest) (*emptypb.Empty, error) {
	return bridge[emptypb.Empty](ctx, r, b.s.Kill)
}

func (b v2Bridge) Exec(ctx context.Context, r *taskv2.ExecProcessRequest) (*emptypb.Empty, error) {
	return bridge[emptypb.Empty](ctx, r, b.s.Exec)
}

func (b v2Bridge) ResizePty(ctx context.Context, r *taskv2.ResizePtyRequest) (*emptypb.Empty, error) {
	return bridge[emptypb.Empty](ctx, r, b.s.ResizePty)
}

func (b v2Bridge) CloseIO(ctx context.Context, r *taskv2.CloseIORequest) (*emptypb.Empty, error) {
	return bridge[emptypb.Empty](ctx, r, b.s.CloseIO)
}

func (b v2Bridge) Update(ctx context.Context, r *taskv2.UpdateTaskRequest) (*emptypb.Empty, error) {
	return bridge[emptypb.Empty](ctx, r, b.s.Update)
}

func (b v2Bridge) Wait(ctx context.Context, r *taskv2.WaitRequest) (*taskv2.WaitResponse, error) {
	return bridge[taskv2.WaitResponse](ctx, r, b.s.Wait)
}

func (b v2Bridge) Stats(ctx context.Context, r *taskv2.StatsRequest) (*taskv2.StatsResponse, error) {
	return bridge[taskv2.StatsResponse](ctx, r, b.s.Stats)
}

func (b v2Bridge) Connect(ctx context.Context, r *taskv2.ConnectRequest) (*taskv2.ConnectResponse, error) {
	return bridge[taskv2.ConnectResponse](ctx, r, b.s.Connect)
}

func (b v2Bridge) Shutdown(ctx context.Context, r *taskv2.ShutdownRequest) (*emptypb.Empty, error) {
	return bridge[emptypb.Empty](ctx, r, b.s.Shutdown)
}
