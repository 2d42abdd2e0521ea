package shim

import (
	"fmt"
	"io"

	"github.com/containerd/containerd/api/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/minishim/containerd-shim-mini-v2/task"
)

// RuntimeName is the name containerd knows this runtime by.
const RuntimeName = "io.containerd.mini.v2"

// runInfo answers containerd 2.x's `-info` probe: stdin holds the runtime
// options (an Any, possibly empty), stdout gets a RuntimeInfo with the OCI
// features document of what this runtime enforces.
func runInfo(stdin io.Reader, stdout io.Writer) error {
	raw, err := readLimited(stdin, maxBootstrapStdin)
	if err != nil {
		return fmt.Errorf("read runtime options: %w", err)
	}
	features, err := task.RuntimeFeatures()
	if err != nil {
		return err
	}
	info := &types.RuntimeInfo{
		Name:     RuntimeName,
		Version:  &types.RuntimeVersion{Version: version},
		Features: features,
	}
	if len(raw) > 0 {
		var opts anypb.Any
		if err := proto.Unmarshal(raw, &opts); err != nil {
			return fmt.Errorf("runtime options are not a protobuf Any: %w", err)
		}
		info.Options = &opts
	}
	data, err := proto.Marshal(info)
	if err != nil {
		return err
	}
	_, err = stdout.Write(data)
	return err
}
