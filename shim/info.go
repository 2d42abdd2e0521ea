package shim

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/containerd/containerd/api/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/minishim/containerd-shim-mini-v2/linux"
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
	features, err := runtimeFeatures()
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

// featuresTypeURL is the type containerd registers for the OCI features
// document; like typeurl for any non-protobuf type, the value is JSON.
const featuresTypeURL = "types.containerd.io/opencontainers/runtime-spec/1/features/Features"

// runtimeFeatures is the OCI features document for RuntimeInfo.Features,
// which containerd's `-info` probe reads (its CRI decides from it whether a
// RuntimeClass may use recursive read-only mounts and user namespaces).
func runtimeFeatures() (*anypb.Any, error) {
	data, err := json.Marshal(linux.Features())
	if err != nil {
		return nil, fmt.Errorf("features document: %w", err)
	}
	return &anypb.Any{TypeUrl: featuresTypeURL, Value: data}, nil
}
