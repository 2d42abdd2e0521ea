// Package cri drives the shim the way Kubernetes does: through the CRI of
// containerd 2.4.2 (k8s.io/cri-api runtime/v1, RuntimeService and
// ImageService over containerd's own socket), with pods, RuntimeClass
// handlers and the security and mount settings a kubelet passes on.
//
// The suite starts one private containerd 2.4.2 with its CRI plugins
// enabled (integration.Options.CRI): a runtime handler per runtime under
// test ("mini" for io.containerd.mini.v2, "runc" for io.containerd.runc.v2),
// no CNI (every pod uses the host's network) and cgroupfs cgroups under
// /minicri/<pod>. There is no registry: the pause image and the busybox
// image are built from a busybox rootfs and imported into the "k8s.io"
// namespace, and the pause image is pinned as the CRI's sandbox image.
//
// The tests need root and what hack/install-deps.sh installs, and take the
// harness's environment (see integration/doc.go): MINI_TEST_RUNTIMES,
// MINI_SHIM_BIN, MINI_TEST_KEEP. MINI_TEST_CONTAINERD does not apply: the
// CRI is configured for 2.4 only.
//
//	cd integration/client && go test -count=1 -v ./cri/
package cri
