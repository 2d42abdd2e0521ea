// Package docker drives the shim the way Docker Engine users do: through
// dockerd's Engine API (github.com/moby/moby/client), with dockerd pointed
// at a private containerd 2.4.2 and told about our runtime in daemon.json
// ("runtimes": {"mini": {"runtimeType": "io.containerd.mini.v2"}}), or
// naming it by its containerd name in HostConfig.Runtime.
//
// dockerd is github.com/moby/moby/v2/cmd/dockerd at the version
// hack/install-deps.sh builds into /opt (MINI_DOCKERD names another
// binary). Each daemon is private: its own data root, exec root, socket
// and containerd namespace under the suite's temp dir, no iptables, no
// bridge (containers use the host's network or none), Debian's tini as
// the init of `Init` containers. Images come from an archive the suite
// builds from a busybox rootfs and loads through the API: there is no
// registry. The userns-remap case starts a second dockerd whose /etc
// (where dockerd reads its subordinate ids) is an overlay in a mount
// namespace of its own, so the host's /etc/subuid is never written.
//
// Where dockerd cannot start here the suite prints a SKIPPED banner naming
// why and its cases skip; a dockerd binary that is missing is a failure
// (install-deps installs it).
//
// The tests need root and take the harness's environment (see
// integration/doc.go): MINI_TEST_RUNTIMES, MINI_SHIM_BIN, MINI_TEST_KEEP.
//
//	cd integration/client && go test -count=1 -v ./docker/
package docker
