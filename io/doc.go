// Package io wires the stdio of one container process to what containerd
// asked for in CreateTaskRequest/ExecProcessRequest: the fifos a client
// made, a file:// log, or a binary:// logging program. Pipes serves a
// process without a terminal; Console serves the pty master of one with a
// terminal.
//
// The package is named io because that is its job in the shim; files import
// the standard library's io as goio.
package io
