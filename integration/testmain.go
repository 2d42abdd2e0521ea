package integration

import (
	"flag"
	"fmt"
	"os"
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
