// MINI_HANDSHAKE numbers the protocol between the shim and the binary its
// container processes start from (the bootstrap, the pid line, the frames
// of linux/initproc/handshake.go). The init binary may be installed apart
// from the shim: a change to any of them bumps it here and as
// initproc.Handshake, so that a mismatched pair fails Create plainly.
#define MINI_HANDSHAKE 1
