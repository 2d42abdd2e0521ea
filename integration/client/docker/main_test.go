package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minishim/containerd-shim-mini-v2/integration"
	"github.com/moby/moby/client"
)

const (
	// busyboxImage is built and loaded by the suite; "localhost/" so that
	// no name could ever be pulled.
	busyboxImage = "localhost/minidocker/busybox:latest"
	// dockerNamespace is the containerd namespace of the suite's dockerd,
	// remapNamespace that of its userns-remap one.
	dockerNamespace = "minidocker"
	remapNamespace  = "minidocker-remap"
	// cgroupParent holds every container's cgroup (/minidocker/<id>),
	// apart from a Docker the host may run.
	cgroupParent = "minidocker"
	// tiniPath is Debian's static tini, dockerd's init-path.
	tiniPath = "/usr/bin/tini-static"
)

// suiteState is everything TestMain prepares; written once before m.Run.
type suiteState struct {
	// The suite's dir, shared rootfs, runtimes and shim.
	*integration.Suite

	c        *integration.Containerd
	docker   *dockerd
	dockerd  string // the binary
	imageTar string
	skip     string // why dockerd cannot run here: every case skips
	err      error  // why the suite is unusable: every case fails
}

var suite suiteState

func TestMain(m *testing.M) {
	integration.SuiteMain(m, "integration/client/docker", runSuite)
}

func runSuite(m *testing.M) (code int, err error) {
	ctx := context.Background()
	s, err := integration.PrepareSuite(ctx, "mtdk-")
	if err != nil {
		return 1, err
	}
	// Checks the shared rootfs and removes the suite's dir, last.
	defer func() { err = errors.Join(err, s.Close()) }()
	suite.Suite = s
	suite.err = startDaemons(ctx)
	if suite.skip != "" {
		banner := strings.Repeat("*", 72)
		fmt.Printf("%s\nSKIPPED: the Docker Engine cases: dockerd cannot start on this host:\n%s\n%s\n", banner, suite.skip, banner)
	}

	code = m.Run()

	var errs []error
	if suite.docker != nil {
		if err := suite.docker.stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop dockerd: %w", err))
		}
	}
	if suite.c != nil {
		if err := suite.c.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop containerd: %w", err))
		}
	}
	integration.RemoveNamespaceCgroups(cgroupParent)
	// runc-v2 keeps its state per containerd namespace under this root,
	// shared with every daemon; empty now unless another run uses it.
	for _, ns := range []string{dockerNamespace, remapNamespace} {
		_ = syscall.Rmdir(filepath.Join("/run/containerd/runc", ns))
	}
	return code, errors.Join(errs...)
}

// startDaemons builds the image, starts containerd 2.4 and dockerd on it
// and loads the image. A dockerd that does not start sets suite.skip.
func startDaemons(ctx context.Context) error {
	suite.dockerd = os.Getenv("MINI_DOCKERD")
	if suite.dockerd == "" {
		suite.dockerd = defaultDockerd
	}
	for _, need := range []string{suite.dockerd, tiniPath} {
		if _, err := os.Stat(need); err != nil {
			return fmt.Errorf("%w (hack/install-deps.sh installs it)", err)
		}
	}
	v, err := integration.LookupVersion("2.4")
	if err != nil {
		return err
	}
	suite.imageTar = filepath.Join(suite.Dir, "busybox.tar")
	if err := integration.WriteOCIImage(suite.Rootfs, suite.imageTar, busyboxImage,
		integration.ImageConfig{Env: []string{"PATH=/bin"}, Cmd: []string{"/bin/sh"}, DockerManifest: true}); err != nil {
		return err
	}
	suite.c, err = integration.StartContainerd(ctx, integration.Options{
		Version: v, ShimDir: suite.ShimDir, Namespace: dockerNamespace, CgroupParent: cgroupParent, Keep: suite.Keep,
	})
	if err != nil {
		return err
	}
	suite.docker, err = startDockerd(ctx, dockerdOptions{
		binary: suite.dockerd, dir: filepath.Join(suite.Dir, "d"), containerd: suite.c,
		namespace: dockerNamespace, initPath: tiniPath,
	})
	if err != nil {
		suite.skip = err.Error()
		return nil
	}
	return loadImage(ctx, suite.docker)
}

// loadImage loads the suite's image archive into d.
func loadImage(ctx context.Context, d *dockerd) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	f, err := os.Open(suite.imageTar)
	if err != nil {
		return err
	}
	defer f.Close()
	res, err := d.client.ImageLoad(ctx, f, client.ImageLoadWithQuiet(true))
	if err != nil {
		return fmt.Errorf("load %s into dockerd: %w", suite.imageTar, err)
	}
	out, err := io.ReadAll(res)
	res.Close()
	if err != nil {
		return fmt.Errorf("load %s into dockerd: %w", suite.imageTar, err)
	}
	if strings.Contains(string(out), `"error`) {
		return fmt.Errorf("load %s into dockerd: %s", suite.imageTar, out)
	}
	if _, err := d.client.ImageInspect(ctx, busyboxImage); err != nil {
		return fmt.Errorf("dockerd has no %s after loading it (%s): %w", busyboxImage, out, err)
	}
	return nil
}
