// Package io wires the non-terminal stdio of one container process to what
// containerd asked for in CreateTaskRequest/ExecProcessRequest: the fifos a
// client made, a file:// log, or a binary:// logging program.
//
// The package is named io because that is its job in the shim; files import
// the standard library's io as goio.
package io
