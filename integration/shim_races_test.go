package integration

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Issue 9, the races model/shim.pml checks that containerd never lets
// reach a shim (it refuses a second task of one id itself, and sends
// Shutdown only after Delete's answer), sent straight to our shim many
// times over: two Creates of one id at once, then Delete and Shutdown at
// once. Exactly one Create wins and the other is AlreadyExists; Delete
// and Shutdown both answer whichever comes first (Delete with the exit
// status), and the shim ends only once its last container is deleted,
// leaving nothing.
func TestShimRaces(t *testing.T) {
	bin := directShimBinary(t)
	const rounds = 5
	for _, d := range suite.daemons {
		t.Run(d.version.Name, func(t *testing.T) {
			t.Parallel()
			if d.err != nil {
				t.Fatalf("containerd %s unusable: %v", d.version.Name, d.err)
			}
			spec, err := d.c.DefaultSpec(context.Background(), suite.Rootfs)
			if err != nil {
				t.Fatal(err)
			}
			// The suite's rootfs is shared: no case may change it.
			spec.Root.Readonly = true
			spec.Process.Args = []string{"/bin/sleep", "1000"}
			shutdownFirst := 0
			for i := 0; i < rounds; i++ {
				s := startShimDirect(t, d, bin, "races")
				spec.Linux.CgroupsPath = d.c.CgroupsPath(s.id)
				data, err := json.Marshal(spec)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(s.bundle, "config.json"), data, 0o644); err != nil {
					t.Fatal(err)
				}

				var errs [2]error
				var wg sync.WaitGroup
				for n := range errs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						errs[n] = s.create()
					}()
				}
				wg.Wait()
				switch {
				case errs[0] == nil && errs[1] == nil:
					t.Fatalf("%s: both Creates of one id succeeded", s.id)
				case errs[0] != nil && errs[1] != nil:
					t.Fatalf("%s: both Creates failed: %v; %v", s.id, errs[0], errs[1])
				}
				lost := errs[0]
				if lost == nil {
					lost = errs[1]
				}
				if !errdefs.IsAlreadyExists(errgrpc.ToNative(lost)) {
					t.Errorf("%s: the Create that lost: want AlreadyExists, got %v", s.id, lost)
				}

				if err := s.call(callTimeout, "Start", &taskv3.StartRequest{ID: s.id}, &taskv3.StartResponse{}); err != nil {
					t.Fatalf("%s: start: %v", s.id, err)
				}
				if err := s.call(callTimeout, "Kill", &taskv3.KillRequest{ID: s.id, Signal: uint32(syscall.SIGKILL)}, &emptypb.Empty{}); err != nil {
					t.Fatalf("%s: kill: %v", s.id, err)
				}
				var waited taskv3.WaitResponse
				if err := s.call(callTimeout, "Wait", &taskv3.WaitRequest{ID: s.id}, &waited); err != nil {
					t.Fatalf("%s: wait: %v", s.id, err)
				}

				var deleted taskv3.DeleteResponse
				var delErr, shutErr error
				shutAt, delAt := make(chan time.Time, 1), make(chan time.Time, 1)
				wg.Add(2)
				go func() {
					defer wg.Done()
					delErr = s.call(callTimeout, "Delete", &taskv3.DeleteRequest{ID: s.id}, &deleted)
					delAt <- time.Now()
				}()
				go func() {
					defer wg.Done()
					shutErr = s.call(callTimeout, "Shutdown", &taskv3.ShutdownRequest{ID: s.id}, &emptypb.Empty{})
					shutAt <- time.Now()
				}()
				wg.Wait()
				if delErr != nil {
					t.Errorf("%s: Delete racing Shutdown: %v", s.id, delErr)
				} else if deleted.ExitStatus != 137 || deleted.ExitStatus != waited.ExitStatus {
					t.Errorf("%s: Delete says exit status %d, Wait said %d, want 137", s.id, deleted.ExitStatus, waited.ExitStatus)
				}
				// Whichever came first, both answers arrive: the shim
				// ends only after the replies of what was in flight.
				if shutErr != nil {
					t.Errorf("%s: Shutdown racing Delete: %v", s.id, shutErr)
				}
				if (<-shutAt).Before(<-delAt) {
					shutdownFirst++
				}
				// Ends the shim if the racing Shutdown did not, and checks
				// it is gone.
				s.shutdown()
			}
			t.Logf("containerd %s: Shutdown answered first in %d of %d rounds", d.version.Name, shutdownFirst, rounds)
		})
	}
}
