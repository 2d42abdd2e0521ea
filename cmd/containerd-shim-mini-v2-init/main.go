// Command containerd-shim-mini-v2-init is what the io.containerd.mini.v2
// shim starts its container processes from when it is installed beside
// the shim: the container side alone (the preamble and linux/initproc),
// without the shim's ttrpc, protobuf and cgroup code, so a container's
// init and each exec start in about half the time. Without it the shim
// starts them from its own binary, in its "init" mode.
package main

import (
	// The cgo preamble must run before the Go runtime starts.
	_ "github.com/minishim/containerd-shim-mini-v2/nsexec"

	"github.com/minishim/containerd-shim-mini-v2/linux/initproc"
)

func main() {
	initproc.Main() // never returns
}
