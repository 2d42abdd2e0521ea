package cri

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/minishim/containerd-shim-mini-v2/integration"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	// criNamespace is the containerd namespace the CRI keeps everything in.
	criNamespace = "k8s.io"
	// Images built and imported by the suite; "localhost/" so that no
	// name could ever be pulled from a registry.
	pauseImage   = "localhost/minicri/pause:latest"
	busyboxImage = "localhost/minicri/busybox:latest"
	// cgroupRoot is the parent of every pod's cgroup parent.
	cgroupRoot = "/minicri"
)

// suiteState is everything TestMain prepares; written once before m.Run.
type suiteState struct {
	// The suite's dir, shared rootfs, runtimes and shim.
	*integration.Suite

	c        *integration.Containerd
	conn     *grpc.ClientConn
	rs       runtime.RuntimeServiceClient
	is       runtime.ImageServiceClient
	handlers map[string]*runtime.RuntimeHandler // what the CRI's Status reports
	err      error                              // why the daemon is unusable
}

var suite suiteState

func TestMain(m *testing.M) {
	integration.SuiteMain(m, "integration/client/cri", runSuite)
}

func runSuite(m *testing.M) (code int, err error) {
	ctx := context.Background()
	s, err := integration.PrepareSuite(ctx, "mtcri-")
	if err != nil {
		return 1, err
	}
	// Checks the rootfs both images were made of and removes the suite's
	// dir, last.
	defer func() { err = errors.Join(err, s.Close()) }()
	suite.Suite = s
	suite.err = startDaemon(ctx)

	code = m.Run()

	var errs []error
	if suite.conn != nil {
		if err := suite.conn.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close the CRI connection: %w", err))
		}
	}
	if suite.c != nil {
		if err := suite.c.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop containerd: %w", err))
		}
	}
	// Each case removed its pod's cgroup parent; /minicri stays busy only
	// while another run of the suite uses it.
	integration.RemoveNamespaceCgroups(cgroupRoot)
	// runc-v2 keeps its state per containerd namespace under this root,
	// shared with every daemon; empty now unless another run uses it.
	_ = syscall.Rmdir(filepath.Join("/run/containerd/runc", criNamespace))
	return code, errors.Join(errs...)
}

// startDaemon starts containerd 2.4 with the CRI, imports the images and
// waits until the CRI serves; the error makes every case fail with it.
func startDaemon(ctx context.Context) error {
	v, err := integration.LookupVersion("2.4")
	if err != nil {
		return err
	}
	images := filepath.Join(suite.Dir, "images")
	if err := os.MkdirAll(images, 0o755); err != nil {
		return fmt.Errorf("images dir: %w", err)
	}
	// `sleep infinity` stands in for the pause binary: busybox's sleep
	// (1.35) takes it, and the CRI stops pods with SIGKILL anyway.
	pauseTar := filepath.Join(images, "pause.tar")
	if err := integration.WriteOCIImage(suite.Rootfs, pauseTar, pauseImage,
		integration.ImageConfig{Env: []string{"PATH=/bin"}, Cmd: []string{"/bin/sleep", "infinity"}}); err != nil {
		return err
	}
	busyboxTar := filepath.Join(images, "busybox.tar")
	if err := integration.WriteOCIImage(suite.Rootfs, busyboxTar, busyboxImage,
		integration.ImageConfig{Env: []string{"PATH=/bin"}, Cmd: []string{"/bin/sh"}}); err != nil {
		return err
	}
	hooksSpec, err := writeHooksSpec(ctx, v)
	if err != nil {
		return err
	}
	cri := &integration.CRIConfig{SandboxImage: pauseImage, Runtimes: map[string]string{}, BaseRuntimeSpecs: map[string]string{}, Options: map[string]string{}}
	for _, rt := range suite.Runtimes {
		cri.Runtimes[integration.RuntimeTag(rt)] = rt
		// The same runtime again, every container with hooks.
		cri.Runtimes[integration.RuntimeTag(rt)+hooksHandlerSuffix] = rt
		cri.BaseRuntimeSpecs[integration.RuntimeTag(rt)+hooksHandlerSuffix] = hooksSpec
		// And with options in its table (for runc's type, runc's options;
		// for any other, CRI's generic ones, the table as TOML).
		cri.Runtimes[integration.RuntimeTag(rt)+optionsHandlerSuffix] = rt
		cri.Options[integration.RuntimeTag(rt)+optionsHandlerSuffix] = handlerOptions
		if rt == integration.MiniRuntime {
			// And with every pod of the handler in one shim.
			cri.Runtimes[integration.RuntimeTag(rt)+sharedHandlerSuffix] = rt
			cri.Options[integration.RuntimeTag(rt)+sharedHandlerSuffix] = sharedHandlerOptions
		}
	}
	suite.c, err = integration.StartContainerd(ctx, integration.Options{
		Version: v, ShimDir: suite.ShimDir, Namespace: criNamespace, Keep: suite.Keep, CRI: cri,
	})
	if err != nil {
		return err
	}
	ictx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for _, tar := range []string{pauseTar, busyboxTar} {
		if err := suite.c.ImportImage(ictx, tar); err != nil {
			return err
		}
	}
	suite.conn, err = grpc.NewClient("unix://"+suite.c.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("CRI client for %s: %w", suite.c.Address, err)
	}
	suite.rs = runtime.NewRuntimeServiceClient(suite.conn)
	suite.is = runtime.NewImageServiceClient(suite.conn)
	if err := waitCRIReady(ictx); err != nil {
		return fmt.Errorf("%w\nlog:\n%s", err, suite.c.LogTail(40))
	}
	// The CRI learns about imported images from containerd's events.
	for _, ref := range []string{pauseImage, busyboxImage} {
		if err := waitImage(ictx, ref); err != nil {
			return err
		}
	}
	return nil
}

// waitCRIReady polls Status until the CRI reports its runtime ready (it
// initializes after the daemon answers) and keeps the runtime handlers'
// features it reports. The network stays "not ready": there is no CNI,
// which host-network pods do not need.
func waitCRIReady(ctx context.Context) error {
	var last error
	for ctx.Err() == nil {
		st, err := suite.rs.Status(ctx, &runtime.StatusRequest{})
		if err == nil {
			for _, c := range st.GetStatus().GetConditions() {
				if c.Type == runtime.RuntimeReady && c.Status {
					suite.handlers = map[string]*runtime.RuntimeHandler{}
					for _, h := range st.GetRuntimeHandlers() {
						suite.handlers[h.GetName()] = h
					}
					return nil
				}
			}
			err = fmt.Errorf("runtime not ready: %v", st.GetStatus().GetConditions())
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("CRI of containerd %s not ready: %v (%w)", suite.c.Version.Name, last, ctx.Err())
}

func waitImage(ctx context.Context, ref string) error {
	var last error
	for ctx.Err() == nil {
		st, err := suite.is.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: ref}})
		if err == nil && st.GetImage() != nil {
			return nil
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("CRI does not see the imported image %s: %v (%w)", ref, last, ctx.Err())
}
