// Command containerd-shim-mini-v2 is the io.containerd.mini.v2 runtime:
// containerd's shim, and, run as "init", a container's first process.
package main

import (
	"os"

	// The cgo preamble must run before the Go runtime starts in init mode.
	_ "github.com/minishim/containerd-shim-mini-v2/nsexec"

	"github.com/minishim/containerd-shim-mini-v2/linux/initproc"
	"github.com/minishim/containerd-shim-mini-v2/shim"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		initproc.Main() // never returns
	}
	os.Exit(shim.Run(os.Args[1:]))
}
