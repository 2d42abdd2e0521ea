//go:build linux && cgo

// Package nsexec is the C preamble that runs in a container process (the
// init binary, or the shim binary's "init" mode) before the Go runtime
// starts, and for most execs the whole process setup (process.c, plan.go),
// so that the Go runtime never starts in them.
//
// Namespaces cannot be entered from Go: setns(2) into a mount namespace
// fails for a multi-threaded process, and a new pid namespace only applies to
// children. The Go runtime is multi-threaded before main runs, so a C
// constructor does this work while the process is still single-threaded.
//
// The constructor does nothing unless _MINI_SYNC_FD names the parent's end
// of the handshake socket. It fails unless _MINI_HANDSHAKE is the protocol
// number it was built with (nsexec.h). It then reads one bootstrap frame,
// joins and creates namespaces, forks once when a pid namespace is involved
// (the child becomes the namespace's process), reports the pid of the
// process that will go on into Go, and returns (or, in the forking parent,
// exits).
//
// Bootstrap frame: a 4-byte little-endian length, then text lines:
//
//	unshare <clone flags, decimal>
//	join <CLONE_NEW* flag of its type, decimal> <path of a namespace file>
//	timens <clock> <seconds> <nanoseconds>   (offsets of a new time namespace)
//	cgroup <tasks file of a cgroup v1 hierarchy>
//	process                                  (set the process up in C from a plan; see plan.go)
//
// Before anything else the preamble writes 0 into each cgroup line's tasks
// file: the one thread there is moves itself, which the kernel does
// without its global threadgroup lock (see linux/cgroup_self_linux.go),
// and everything it forks is born in that cgroup. Namespaces are joined
// after that (the user namespace after the others, which
// are tried again inside it when they refused the host's root; the mount
// namespace last of those), then a new user namespace is created, then the
// rest. With a new user namespace the preamble writes "usermap\n" and
// waits for one byte, '1', once the parent wrote its uid_map and gid_map;
// in a user namespace, created or joined, it becomes root (uid and gid 0).
// It forks when a pid namespace is joined or created, or a time namespace
// created: both apply to children only.
//
// Reply line: "pid <n>\n" or "error <text>\n". After it the process that
// goes on reads its config frame: initproc.Config for Go, or with a
// "process" line the plan, which the preamble applies itself.
package nsexec

// #cgo CFLAGS: -Wall -Wextra -std=gnu11
// #include "nsexec.h"
// extern void mini_nsexec(void);
// void __attribute__((constructor)) mini_nsexec_init(void) { mini_nsexec(); }
import "C"

// handshake is MINI_HANDSHAKE, for the test that holds it equal to
// initproc.Handshake.
const handshake = C.MINI_HANDSHAKE
