// Package integration drives real containerd daemons (1.6 and 2.4.2)
// through ctr to test a shim end to end. The non-test files are a small
// harness that the benchmark (bench/) and the demo (integration/cmd/demo)
// reuse: start and stop a private containerd, run ctr with deadlines, build
// a busybox rootfs and an OCI image of it, watch events, and find what a
// container left behind.
//
// The tests need root, Linux, containerd 1.6 (/usr/bin) and 2.4.2
// (/opt/containerd-2.4.2/bin) and busybox-static: hack/install-deps.sh
// installs them. Each case runs once per containerd version and runtime:
//
//	MINI_TEST_RUNTIMES    runtimes to test, comma separated
//	                      (default io.containerd.mini.v2; io.containerd.runc.v2
//	                      is the reference the expectations were checked on)
//	MINI_TEST_CONTAINERD  containerd versions (default 1.6,2.4)
//	MINI_SHIM_BIN         containerd-shim-mini-v2 to test (default: go build
//	                      ./cmd/containerd-shim-mini-v2 into a temp dir)
//	MINI_TEST_KEEP=1      keep the daemons' dirs and logs (/tmp/mt16-*, ...)
//	MINI_TEST_DIRECT_SHIM drive this shim binary in TestShimDirect instead
//	MINI_TEST_EMULATED=1  the machine is emulated (the TCG guest): the long
//	                      cases (soak, load) skip and the restart runs smaller
//
// Every daemon gets its own temp dir, sockets and config, works in the
// containerd namespace "minitest" (so containers get the cgroup
// /minitest/<id>) and never touches /run/containerd/containerd.sock. Shim
// sockets still live in /run/containerd/s and runc's state in
// /run/containerd/runc/minitest, both shared between daemons, so container
// ids carry the version and a random suffix.
package integration
