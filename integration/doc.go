// Package integration drives real containerd daemons (1.6 and 2.4) through
// ctr to test a shim end to end. The non-test files are a small harness the
// benchmark (bench/) and the demo (integration/cmd/demo) reuse: start and stop
// a private containerd, run ctr with deadlines, build a busybox rootfs and an
// OCI image of it, watch events and look for what a container left behind.
//
// Everything here needs root, a Linux host, containerd 1.6 (/usr/bin) and/or
// 2.4.2 (/opt/containerd-2.4.2/bin) and busybox-static; hack/install-deps.sh
// installs them.
package integration
