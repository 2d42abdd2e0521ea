package task

import (
	"testing"

	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types"
	"google.golang.org/protobuf/proto"
)

func TestBridgeRecodeKeepsEveryField(t *testing.T) {
	in := &taskv2.CreateTaskRequest{
		ID: "c1", Bundle: "/b", Stdin: "/in", Stdout: "/out", Stderr: "/err", Terminal: true,
		Rootfs: []*types.Mount{{Type: "overlay", Source: "overlay", Target: "t", Options: []string{"lowerdir=/l"}}},
	}
	var out taskv3.CreateTaskRequest
	if err := recode(in, &out); err != nil {
		t.Fatal(err)
	}
	back := &taskv2.CreateTaskRequest{}
	if err := recode(&out, back); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(in, back) {
		t.Fatalf("round trip changed the request:\n%v\n%v", in, back)
	}
	if out.ID != "c1" || out.Rootfs[0].Options[0] != "lowerdir=/l" || !out.Terminal {
		t.Fatalf("v3 request lost fields: %v", &out)
	}
}
