package shim

import (
	"os"
	"testing"
)

// daemonTestEnv makes the test binary act as the shim binary, so that
// start can launch "itself" as the daemon in TestStartLaunchesDaemon.
const daemonTestEnv = "SHIM_TEST_AS_SHIM"

func TestMain(m *testing.M) {
	if os.Getenv(daemonTestEnv) == "1" {
		os.Exit(Run(os.Args[1:]))
	}
	os.Exit(m.Run())
}
