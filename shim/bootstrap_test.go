package shim

import (
	"bytes"
	"testing"

	bootstrapapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseStartInput(t *testing.T) {
	// A stand-in for runc's Options: any message wrapped in an Any, as
	// containerd before 2.3 sends it.
	opts, err := anypb.New(structpb.NewStringValue("/usr/bin/runc"))
	if err != nil {
		t.Fatal(err)
	}
	opts.TypeUrl = "containerd.runc.v1.Options"
	dir := "/run/x/s"
	params := func(id, ns string) []byte {
		return mustMarshal(t, &bootstrapapi.BootstrapParams{
			InstanceID:             id,
			Namespace:              ns,
			ContainerdGrpcAddress:  "/run/containerd/containerd.sock",
			ContainerdTtrpcAddress: "/run/containerd/containerd.sock.ttrpc",
			LogLevel:               bootstrapapi.LogLevel_LOG_LEVEL_DEBUG,
			SocketDir:              &dir,
		})
	}

	tests := []struct {
		name          string
		input         []byte
		wantBootstrap bool
		wantLegacy    bool
	}{
		{name: "empty stdin", input: nil},
		{name: "runtime options any", input: mustMarshal(t, opts), wantLegacy: true},
		{name: "bootstrap params for us", input: params("c1", "default"), wantBootstrap: true},
		{name: "bootstrap params other id", input: params("c2", "default"), wantLegacy: true},
		{name: "bootstrap params other namespace", input: params("c1", "k8s.io"), wantLegacy: true},
		{name: "garbage", input: []byte{0xff, 0xff, 0xff}, wantLegacy: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := parseStartInput(tt.input, "c1", "default")
			if got := req.bootstrap != nil; got != tt.wantBootstrap {
				t.Fatalf("bootstrap = %v, want %v", got, tt.wantBootstrap)
			}
			if got := len(req.legacyOptions) > 0; got != tt.wantLegacy {
				t.Fatalf("legacy options = %v, want %v", got, tt.wantLegacy)
			}
			if tt.wantBootstrap {
				if got := req.socketDir(); got != dir {
					t.Errorf("socketDir = %q, want %q", got, dir)
				}
				if !req.debug() {
					t.Error("debug log level not seen")
				}
				if got := req.containerdAddress("/flag.sock"); got != "/run/containerd/containerd.sock" {
					t.Errorf("containerdAddress = %q", got)
				}
			} else {
				if got := req.socketDir(); got != defaultSocketDir {
					t.Errorf("socketDir = %q, want default", got)
				}
				if got := req.containerdAddress("/flag.sock"); got != "/flag.sock" {
					t.Errorf("containerdAddress = %q, want the flag", got)
				}
			}
		})
	}
}

func TestEncodeStartOutput(t *testing.T) {
	const address = "unix:///run/containerd/s/abc"
	t.Run("plain address for old containerd", func(t *testing.T) {
		out, err := startRequest{}.encodeStartOutput(address)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, []byte(address)) {
			t.Fatalf("out = %q, want %q", out, address)
		}
	})
	t.Run("bootstrap result for containerd 2.3+", func(t *testing.T) {
		req := startRequest{bootstrap: &bootstrapapi.BootstrapParams{InstanceID: "c1", Namespace: "default"}}
		out, err := req.encodeStartOutput(address)
		if err != nil {
			t.Fatal(err)
		}
		var res bootstrapapi.BootstrapResult
		if err := proto.Unmarshal(out, &res); err != nil {
			t.Fatalf("unmarshal result: %v", err)
		}
		if res.GetVersion() != 3 || res.GetAddress() != address || res.GetProtocol() != "ttrpc" {
			t.Fatalf("result = %v", &res)
		}
	})
}
