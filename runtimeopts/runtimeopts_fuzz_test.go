package runtimeopts

import (
	"testing"

	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/types/known/anypb"
)

// FuzzRuntimeOptions: any options table and any Any are read or refused
// with InvalidArgument (NotFound for a ConfigPath that names no file),
// never a panic.
func FuzzRuntimeOptions(f *testing.F) {
	f.Add([]byte("SystemdCgroup = true\nIoUid = 3\n"), "")
	f.Add([]byte("[x]\ny = 1"), "")
	f.Add([]byte{0x18, 1}, "containerd.runc.v1.Options")
	f.Fuzz(func(t *testing.T, body []byte, typeURL string) {
		a, err := anypb.New(&runtimeoptions.Options{ConfigBody: body})
		if err != nil {
			t.Fatal(err)
		}
		if typeURL != "" {
			a = &anypb.Any{TypeUrl: typeURL, Value: body}
		}
		if _, err := Decode(a); err != nil && !errdefs.IsInvalidArgument(err) && !errdefs.IsNotFound(err) && !errdefs.IsNotImplemented(err) {
			t.Fatalf("Decode: %v is neither InvalidArgument, NotFound nor NotImplemented", err)
		}
	})
}
