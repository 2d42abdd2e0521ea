package runtimeopts

import (
	"fmt"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/types/known/anypb"
)

// DecodeCheckpoint reads a checkpoint request's options: runc's
// CheckpointOptions (what ctr, the Go client and containerd send to any
// runtime), or none (every default). Another type is refused, naming it.
func DecodeCheckpoint(opts *anypb.Any) (*runcoptions.CheckpointOptions, error) {
	var c runcoptions.CheckpointOptions
	switch {
	case opts == nil || (opts.GetTypeUrl() == "" && len(opts.GetValue()) == 0):
		return &c, nil
	case opts.MessageIs(&c):
		if err := opts.UnmarshalTo(&c); err != nil {
			return nil, fmt.Errorf("checkpoint options %s: %v: %w", opts.GetTypeUrl(), err, errdefs.ErrInvalidArgument)
		}
		return &c, nil
	}
	return nil, fmt.Errorf("checkpoint options of type %q: not runc's (containerd.runc.v1.CheckpointOptions): %w", opts.GetTypeUrl(), errdefs.ErrInvalidArgument)
}
