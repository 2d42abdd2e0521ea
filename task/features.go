package task

import (
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/minishim/containerd-shim-mini-v2/linux"
)

// featuresTypeURL is the type containerd registers for the OCI features
// document; like typeurl for any non-protobuf type, the value is JSON.
const featuresTypeURL = "types.containerd.io/opencontainers/runtime-spec/1/features/Features"

// RuntimeFeatures is the OCI features document for RuntimeInfo.Features,
// which containerd's `-info` probe reads (its CRI decides from it whether a
// RuntimeClass may use recursive read-only mounts and user namespaces).
func RuntimeFeatures() (*anypb.Any, error) {
	data, err := json.Marshal(linux.Features())
	if err != nil {
		return nil, fmt.Errorf("features document: %w", err)
	}
	return &anypb.Any{TypeUrl: featuresTypeURL, Value: data}, nil
}
