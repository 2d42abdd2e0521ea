package integration

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// SuiteMain is the TestMain of a suite of this harness: such a suite is
// skipped in -short mode and without root; otherwise run prepares what its
// cases share, runs m and tears down, and an error it returns fails the
// suite. label names the suite in what is printed.
func SuiteMain(m *testing.M, label string, run func(*testing.M) (int, error)) {
	flag.Parse()
	if testing.Short() {
		fmt.Printf("%s: skipped in -short mode\n", label)
		os.Exit(0)
	}
	if os.Geteuid() != 0 {
		fmt.Printf("%s: skipped, needs root\n", label)
		os.Exit(0)
	}
	code, err := run(m)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", label, err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// Suite is what every suite of this harness prepares alike before its
// daemons: a temp dir, the busybox rootfs its containers share and our
// shim. Close checks the rootfs and removes the dir.
type Suite struct {
	Dir      string   // the suite's temp dir; everything else lives in it
	Rootfs   string   // Dir/rootfs, a busybox tree no container may change
	Runtimes []string // MINI_TEST_RUNTIMES
	ShimDir  string   // our shim's dir, for containerd's PATH
	ShimErr  error    // why our shim is unavailable (its cases fail with it)
	Keep     bool     // MINI_TEST_KEEP=1: leave daemon dirs and logs for a post-mortem

	before []string // Rootfs's fingerprint before the cases
}

// PrepareSuite makes a temp dir named after prefix, builds the busybox
// rootfs in it and fingerprints it, and, when MINI_TEST_RUNTIMES includes
// our runtime, prepares our shim (a failure there is ShimErr, not an error:
// only the cases of our runtime fail). On an error nothing is left.
func PrepareSuite(ctx context.Context, prefix string) (*Suite, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, err
	}
	// Containers in a user namespace of their own are not host root:
	// they reach the rootfs (and volumes kept here) only through a
	// directory everyone may pass.
	if err := os.Chmod(dir, 0o711); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &Suite{
		Dir:      dir,
		Rootfs:   filepath.Join(dir, "rootfs"),
		Runtimes: ListFromEnv("MINI_TEST_RUNTIMES", MiniRuntime),
		Keep:     os.Getenv("MINI_TEST_KEEP") == "1",
	}
	fail := func(err error) (*Suite, error) {
		if !s.Keep {
			os.RemoveAll(dir)
		}
		return nil, err
	}
	if err := BuildBusyboxRootfs(ctx, s.Rootfs); err != nil {
		return fail(err)
	}
	if s.before, err = Fingerprint(s.Rootfs); err != nil {
		return fail(err)
	}
	if slices.Contains(s.Runtimes, MiniRuntime) {
		s.ShimDir, s.ShimErr = PrepareShim(ctx, dir)
		if s.ShimErr != nil {
			fmt.Fprintf(os.Stderr, "%s: %s cases will fail: %v\n", strings.TrimSuffix(prefix, "-"), MiniRuntime, s.ShimErr)
		}
	}
	return s, nil
}

// Close fails if a container changed Rootfs and removes Dir unless Keep.
// Call it once the suite's daemons are stopped.
func (s *Suite) Close() error {
	var errs []error
	after, err := Fingerprint(s.Rootfs)
	if err != nil {
		errs = append(errs, err)
	} else if diff := DiffFingerprints(s.before, after); len(diff) > 0 {
		errs = append(errs, fmt.Errorf("containers changed the shared rootfs %s:\n%s", s.Rootfs, strings.Join(diff, "\n")))
	}
	if !s.Keep {
		os.RemoveAll(s.Dir)
	}
	return errors.Join(errs...)
}
