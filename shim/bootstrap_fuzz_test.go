package shim

import (
	"testing"

	bootstrapapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// FuzzStartInput: whatever containerd (or anything else) writes to
// start's stdin, telling the protocols apart, reading the runtime options
// and encoding the answer never panic, and the answer names the address.
func FuzzStartInput(f *testing.F) {
	params, _ := proto.Marshal(&bootstrapapi.BootstrapParams{InstanceID: "c1", Namespace: "ns", ContainerdGrpcAddress: "/run/c.sock",
		Extensions: []*bootstrapapi.Extension{{Value: &anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: []byte{0x48, 1}}}}})
	f.Add(params)
	opts, _ := proto.Marshal(&anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: []byte{0x18, 1}})
	f.Add(opts)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, input []byte) {
		req := parseStartInput(input, "c1", "ns")
		_ = req.runtimeOptions()
		_ = req.containerdAddress("/run/containerd/containerd.sock")
		_ = req.socketDir()
		out, err := req.encodeStartOutput("unix:///run/containerd/s/x")
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		if req.bootstrap == nil && string(out) != "unix:///run/containerd/s/x" {
			t.Fatalf("plain answer %q", out)
		}
	})
}
