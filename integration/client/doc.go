// Package client drives the containerd daemons of the integration harness
// (github.com/minishim/containerd-shim-mini-v2/integration) through
// containerd's own Go client, github.com/containerd/containerd/v2/client,
// for what ctr cannot do: Update of a running task with chosen resources,
// the error classes Update returns, metrics read back as typed values, a
// pids limit watched from outside while the container forks, and the
// standard devices under the client's deny-all default spec.
//
// It is a module of its own so that the shim's module never depends on
// containerd itself. The client is v2.4.2, the version of the newer daemon;
// every call made here is one containerd 1.6 serves as well, so both
// daemons are tested with it.
//
// The tests need root and what hack/install-deps.sh installs, and take the
// same environment as the harness (see integration/doc.go):
// MINI_TEST_RUNTIMES, MINI_TEST_CONTAINERD, MINI_SHIM_BIN, MINI_TEST_KEEP.
//
//	cd integration/client && go test -count=1 -v .
package client
