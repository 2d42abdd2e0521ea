package integration

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
)

// shimUpdater calls Update on the shim of a container, in the task API
// version the shim told containerd it speaks.
type shimUpdater func(ctx context.Context, id string, resources *anypb.Any) error

// shimTaskClient dials the task service of the shim containerd started for
// the container, from the address file in its bundle.
func (tc *tcase) shimTaskClient() shimUpdater {
	tc.t.Helper()
	// 1.x and our shim write `address`; containerd 2.x keeps the
	// bootstrap result in bootstrap.json.
	dir := tc.c.TaskDir(tc.id)
	var addr string
	version := 2
	if data, err := os.ReadFile(filepath.Join(dir, "address")); err == nil {
		addr = strings.TrimSpace(string(data))
	} else if data, err := os.ReadFile(filepath.Join(dir, "bootstrap.json")); err == nil {
		var boot struct {
			Address string `json:"address"`
			Version int    `json:"version"`
		}
		if err := json.Unmarshal(data, &boot); err != nil {
			tc.t.Fatalf("parse bootstrap.json: %v", err)
		}
		addr, version = boot.Address, boot.Version
	} else {
		tc.t.Fatalf("shim address: neither address nor bootstrap.json in %s", dir)
	}
	addr = strings.TrimPrefix(addr, "unix://")
	conn, err := net.DialTimeout("unix", addr, 5*time.Second)
	if err != nil {
		tc.t.Fatalf("dial shim %s: %v", addr, err)
	}
	client := ttrpc.NewClient(conn)
	tc.t.Cleanup(func() { client.Close() })
	if version == 3 {
		task := taskv3.NewTTRPCTaskClient(client)
		return func(ctx context.Context, id string, res *anypb.Any) error {
			_, err := task.Update(ctx, &taskv3.UpdateTaskRequest{ID: id, Resources: res})
			return err
		}
	}
	task := taskv2.NewTTRPCTaskClient(client)
	return func(ctx context.Context, id string, res *anypb.Any) error {
		_, err := task.Update(ctx, &taskv2.UpdateTaskRequest{ID: id, Resources: res})
		return err
	}
}

// Issue 4: Update changes the resources of a running container (ctr has no
// update command, so the test calls the shim's task API as containerd's
// client would); Update of a stopped task is refused.
func TestUpdate(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		tc := newCase(t, tg, "update")
		tc.startDetached("/bin/sleep", "1000")
		update := tc.shimTaskClient()
		limit := int64(48 << 20)
		res, err := json.Marshal(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}})
		if err != nil {
			t.Fatal(err)
		}
		resources := &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources", Value: res}
		ctx, cancel := context.WithTimeout(tc.ctx, 10*time.Second)
		defer cancel()
		if err := update(ctx, tc.id, resources); err != nil {
			t.Fatalf("update: %v", err)
		}
		file, controller, want := "memory.limit_in_bytes", "memory", "50331648"
		if CgroupV2() {
			file, controller = "memory.max", ""
		}
		if got := tc.cgroupFile(controller, file); got != want {
			t.Fatalf("%s = %q after update, want %s", file, got, want)
		}

		if r := tc.ctr("", "tasks", "kill", "--signal", "SIGKILL", tc.id); r.ExitCode != 0 {
			t.Fatalf("kill: %s", r)
		}
		tc.waitStatus("STOPPED")
		err = update(ctx, tc.id, resources)
		if err == nil {
			t.Fatalf("update of a stopped task succeeded")
		}
		if tg.runtime == MiniRuntime && !errdefs.IsFailedPrecondition(errgrpc.ToNative(err)) {
			t.Fatalf("update of a stopped task: %v; want failed precondition", err)
		}
	})
}
