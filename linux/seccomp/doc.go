// Package seccomp turns an OCI linux.seccomp profile into a BPF program
// and loads it.
//
// The two halves run in different processes. The shim daemon compiles
// profiles with libseccomp (Compile, and a Cache keyed by the profile's
// digest, since every pod with RuntimeDefault sends the same profile) and
// hands the program to the container's init or exec process in its config.
// That process only loads it with seccomp(2) (package bpf, which links no
// libseccomp, so the init binary does not either), so it needs neither
// libseccomp's state nor time to compile, and the flags the profile asks
// for (TSYNC, LOG, SPEC_ALLOW, WAIT_KILLABLE_RECV, and NEW_LISTENER for
// SCMP_ACT_NOTIFY) are passed to the kernel there.
package seccomp
