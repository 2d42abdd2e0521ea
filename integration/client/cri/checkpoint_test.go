package cri

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minishim/containerd-shim-mini-v2/integration"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Issue 11: Kubernetes' forensic checkpointing, CheckpointContainer of
// containerd 2.4's CRI: the running container is dumped (and left
// running) and the CRI writes the archive a kubelet keeps: CRIU's images
// under checkpoint/, the spec and the container's config beside them.
func TestCRICheckpointContainer(t *testing.T) {
	integration.RequireCRIU(t)
	forEachRuntime(t, func(t *testing.T, tg target) {
		p := runPod(t, tg, "ckpt", false)
		c := p.start("counter", &runtime.ContainerConfig{
			Command: []string{"/bin/sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.1; done"},
		})
		archive := filepath.Join(t.TempDir(), "checkpoint.tar")
		ctx, cancel := callCtx()
		defer cancel()
		if _, err := suite.rs.CheckpointContainer(ctx, &runtime.CheckpointContainerRequest{ContainerId: c.id, Location: archive, Timeout: 60}); err != nil {
			t.Fatalf("CheckpointContainer: %v\n%s", err, suite.c.LogAbout(c.id, 30))
		}
		names := tarNames(t, archive)
		// Beside CRIU's images, what each runtime keeps for its restore.
		record := "checkpoint/mini-checkpoint.json"
		if tg.runtime != integration.MiniRuntime {
			record = "checkpoint/descriptors.json"
		}
		for _, want := range []string{"checkpoint/inventory.img", record, "spec.dump", "config.dump", "status.dump"} {
			if !names[want] {
				t.Errorf("the checkpoint archive lacks %s; it holds %v", want, names)
			}
		}
		st, err := suite.rs.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: c.id})
		if err != nil || st.GetStatus().GetState() != runtime.ContainerState_CONTAINER_RUNNING {
			t.Fatalf("after the checkpoint: %v (%v), want running", st.GetStatus().GetState(), err)
		}
		first := c.exec("cat", "/tmp/n")
		time.Sleep(300 * time.Millisecond)
		if again := c.exec("cat", "/tmp/n"); again.exitCode != 0 || again.stdout == first.stdout {
			t.Errorf("the container does not count on after the checkpoint: %s then %s", first, again)
		}
	})
}

// tarNames lists the regular files of a tar archive.
func tarNames(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := map[string]bool{}
	r := tar.NewReader(f)
	for {
		h, err := r.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		names[strings.TrimPrefix(h.Name, "./")] = true
	}
}
