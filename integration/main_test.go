package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Image the suite imports into every daemon.
const (
	testImage      = "docker.io/library/minitest:latest"
	testImageCmdOK = "default-cmd /bin:/usr/bin\n"
)

// daemon is one containerd version shared by all cases.
type daemon struct {
	version Version
	c       *Containerd
	events  *EventWatcher
	err     error // why this version is unusable
	// hung maps a runtime to why it is not worth testing here: a plain
	// `ctr run` did not finish in time, so every case would only time out.
	hung map[string]error
}

// suiteState is everything TestMain prepares. It is the only package
// level state of the tests and is written once before m.Run.
type suiteState struct {
	// The suite's dir, shared rootfs, runtimes and shim.
	*Suite
	image   string
	daemons []*daemon
}

var suite suiteState

func TestMain(m *testing.M) {
	SuiteMain(m, "integration", runSuite)
}

func runSuite(m *testing.M) (code int, err error) {
	ctx := context.Background()
	s, err := PrepareSuite(ctx, "mtsuite-")
	if err != nil {
		return 1, err
	}
	// Checks the shared rootfs and removes the suite's dir, last.
	defer func() { err = errors.Join(err, s.Close()) }()
	suite.Suite = s

	suite.image = filepath.Join(suite.Dir, "image.tar")
	if err := WriteOCIImage(suite.Rootfs, suite.image, testImage, ImageConfig{
		Env: []string{"PATH=/bin:/usr/bin"},
		Cmd: []string{"/bin/sh", "-c", "echo default-cmd $PATH"},
	}); err != nil {
		return 1, err
	}

	for _, name := range ListFromEnv("MINI_TEST_CONTAINERD", "1.6,2.4") {
		d := startDaemon(ctx, name)
		if d.err == nil {
			d.smokeTest(ctx)
		}
		suite.daemons = append(suite.daemons, d)
	}

	code = m.Run()

	var errs []error
	for _, d := range suite.daemons {
		if d.events != nil {
			d.events.Stop()
		}
		if d.c != nil {
			if err := d.c.Stop(ctx); err != nil {
				errs = append(errs, fmt.Errorf("stop containerd %s: %w", d.version.Name, err))
			}
		}
	}
	RemoveNamespaceCgroups(DefaultNamespace)
	return code, errors.Join(errs...)
}

func startDaemon(ctx context.Context, name string) *daemon {
	d := &daemon{}
	v, err := LookupVersion(name)
	if err != nil {
		d.version, d.err = Version{Name: name}, err
		return d
	}
	d.version = v
	d.c, d.err = StartContainerd(ctx, Options{Version: v, ShimDir: suite.ShimDir, Keep: suite.Keep})
	if d.err != nil {
		return d
	}
	ictx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if d.err = d.c.ImportImage(ictx, suite.image); d.err != nil {
		return d
	}
	d.events, d.err = d.c.WatchEvents(ctx)
	return d
}

// smokeTest runs /bin/true once per runtime so that a shim that hangs
// costs one timeout instead of one per case.
func (d *daemon) smokeTest(ctx context.Context) {
	d.hung = map[string]error{}
	for _, rt := range suite.Runtimes {
		if rt == MiniRuntime && suite.ShimErr != nil {
			continue
		}
		id := fmt.Sprintf("smoke-%s-%s-%s", d.version.Tag(), RuntimeTag(rt), RandomSuffix())
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		res := d.c.Ctr(sctx, nil, "run", "--rm", "--runtime", rt, "--rootfs", suite.Rootfs, id, "/bin/true")
		cancel()
		if res.Err != nil {
			d.hung[rt] = fmt.Errorf("smoke test did not finish: %s", res)
			fmt.Fprintf(os.Stderr, "integration: %s on containerd %s hangs, its cases will fail: %s\n", rt, d.version.Name, res)
		}
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		d.c.ForceCleanup(cctx, ShimBinaryName(rt), id)
		cancel()
	}
}
