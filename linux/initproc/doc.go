// Package initproc is the container process's side of the runtime: what an
// init or exec process runs between the C preamble (nsexec), which put it
// in the container's namespaces, and its execve() of the user's program.
// It reads its Config from the shim over the handshake socket, sets up the
// rootfs, mounts and devices (init), applies the process's identity, LSM
// labels, rlimits and attributes, loads the seccomp filter the shim
// compiled, reports ready and waits for start.
//
// It runs in containerd-shim-mini-v2-init, a binary of its own, so it must
// import nothing of the shim's side (ttrpc, protobuf, cgroup managers,
// CRIU): every import adds to the start of every container process. The
// shim's side (package linux) imports it for the handshake's types and the
// mount code both sides use.
package initproc

// BinaryName is the binary that runs this package on its own (see
// cmd/containerd-shim-mini-v2-init), installed beside the shim.
const BinaryName = "containerd-shim-mini-v2-init"
