package shim

import (
	"fmt"

	bootstrapapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// startRequest is what `start` learned from containerd, whichever protocol
// it speaks.
type startRequest struct {
	// bootstrap is set when containerd (2.3+) sent BootstrapParams and
	// expects a BootstrapResult back; nil means the plain-address protocol.
	bootstrap *bootstrapapi.BootstrapParams
	// legacyOptions is the runtime options Any older containerd sends on
	// stdin, raw; empty when there were none.
	legacyOptions []byte
}

// parseStartInput tells the two protocols apart. Runtime options of old
// containerd can happen to decode as BootstrapParams (both are protobuf), so
// only params naming our own id and namespace count as the new protocol.
func parseStartInput(input []byte, id, namespace string) startRequest {
	if len(input) == 0 {
		return startRequest{}
	}
	var p bootstrapapi.BootstrapParams
	if err := proto.Unmarshal(input, &p); err == nil && p.GetInstanceID() == id && p.GetNamespace() == namespace {
		return startRequest{bootstrap: &p}
	}
	return startRequest{legacyOptions: input}
}

// runtimeOptions are the runtime options containerd sent: the Any on
// stdin (older containerd), or the bootstrap's extensions.
func (r startRequest) runtimeOptions() []*anypb.Any {
	if r.bootstrap != nil {
		var out []*anypb.Any
		for _, e := range r.bootstrap.GetExtensions() {
			if v := e.GetValue(); v != nil {
				out = append(out, v)
			}
		}
		return out
	}
	if len(r.legacyOptions) == 0 {
		return nil
	}
	var a anypb.Any
	if proto.Unmarshal(r.legacyOptions, &a) != nil {
		return nil
	}
	return []*anypb.Any{&a}
}

// containerdAddress is the grpc address that names the socket: the one in
// the bootstrap params when there are any (what containerd's own shims
// hash), else the -address flag.
func (r startRequest) containerdAddress(flagAddress string) string {
	if a := r.bootstrap.GetContainerdGrpcAddress(); a != "" {
		return a
	}
	return flagAddress
}

func (r startRequest) socketDir() string {
	if d := r.bootstrap.GetSocketDir(); d != "" {
		return d
	}
	return defaultSocketDir
}

func (r startRequest) debug() bool {
	return r.bootstrap != nil && r.bootstrap.GetLogLevel() <= bootstrapapi.LogLevel_LOG_LEVEL_DEBUG
}

// encodeStartOutput is what `start` prints: a BootstrapResult for the
// bootstrap protocol (task API v3), the bare address otherwise (task API v2).
func (r startRequest) encodeStartOutput(address string) ([]byte, error) {
	if r.bootstrap == nil {
		return []byte(address), nil
	}
	out, err := proto.Marshal(&bootstrapapi.BootstrapResult{
		Version:  3,
		Address:  address,
		Protocol: "ttrpc",
	})
	if err != nil {
		return nil, fmt.Errorf("marshal bootstrap result: %w", err)
	}
	return out, nil
}
