package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/minishim/containerd-shim-mini-v2/integration"
)

// daemon is one containerd version shared by all cases, with a Go client
// connected to it.
type daemon struct {
	version integration.Version
	c       *integration.Containerd
	client  *containerd.Client
	err     error // why this version is unusable
}

// suiteState is everything TestMain prepares; written once before m.Run.
type suiteState struct {
	// The suite's dir, shared rootfs, runtimes and shim.
	*integration.Suite
	fifoDir string // task stdio fifos, inside dir so nothing outlives the run
	daemons []*daemon
}

var suite suiteState

func TestMain(m *testing.M) {
	integration.SuiteMain(m, "integration/client", runSuite)
}

func runSuite(m *testing.M) (code int, err error) {
	ctx := context.Background()
	s, err := integration.PrepareSuite(ctx, "mtclient-")
	if err != nil {
		return 1, err
	}
	// Checks the shared rootfs and removes the suite's dir, last.
	defer func() { err = errors.Join(err, s.Close()) }()
	suite.Suite = s
	suite.fifoDir = filepath.Join(suite.Dir, "fifo")
	for _, name := range integration.ListFromEnv("MINI_TEST_CONTAINERD", "1.6,2.4") {
		suite.daemons = append(suite.daemons, startDaemon(ctx, name))
	}

	code = m.Run()

	var errs []error
	for _, d := range suite.daemons {
		if d.client != nil {
			if err := d.client.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close client of containerd %s: %w", d.version.Name, err))
			}
		}
		if d.c != nil {
			if err := d.c.Stop(ctx); err != nil {
				errs = append(errs, fmt.Errorf("stop containerd %s: %w", d.version.Name, err))
			}
		}
	}
	integration.RemoveNamespaceCgroups(integration.DefaultNamespace)
	return code, errors.Join(errs...)
}

func startDaemon(ctx context.Context, name string) *daemon {
	d := &daemon{}
	v, err := integration.LookupVersion(name)
	if err != nil {
		d.version, d.err = integration.Version{Name: name}, err
		return d
	}
	d.version = v
	d.c, d.err = integration.StartContainerd(ctx, integration.Options{Version: v, ShimDir: suite.ShimDir, Keep: suite.Keep})
	if d.err != nil {
		return d
	}
	d.client, err = containerd.New(d.c.Address, containerd.WithDefaultNamespace(d.c.Namespace), containerd.WithTimeout(10*time.Second))
	if err != nil {
		d.err = fmt.Errorf("connect the Go client to containerd %s at %s: %w", v.Name, d.c.Address, err)
		return d
	}
	// One round trip now, so that a daemon the client cannot talk to fails
	// every case with this reason instead of a timeout each.
	vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sv, err := d.client.Version(vctx)
	if err != nil {
		d.err = fmt.Errorf("Go client: version of containerd %s: %w", v.Name, err)
		return d
	}
	fmt.Fprintf(os.Stderr, "integration/client: containerd %s answers the v2 Go client as %s\n", v.Name, sv.Version)
	return d
}
