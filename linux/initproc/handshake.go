package initproc

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/minishim/containerd-shim-mini-v2/linux/seccomp/bpf"
)

// Handshake numbers this protocol, with the preamble's bootstrap and pid
// line: the shim sends it as _MINI_HANDSHAKE, and the preamble refuses
// another number (nsexec/nsexec.h says the same one). The init binary may
// be installed apart from the shim; bump both on any change to either.
const Handshake = 2

// The parent and the container's init talk over one socketpair. After the C
// preamble's bootstrap frame and its "pid" line, every message is a frame: a
// 4-byte little-endian length and a JSON document.
//
//	parent → init   Config
//	parent → init   one byte with the fds of the idmapped mounts
//	                (SCM_RIGHTS), in batches, when Config.IDMappedMounts
//	                names any
//	init → parent   Message{console} with the pty master attached (SCM_RIGHTS),
//	                when the process has a terminal
//	init → parent   Message{seccomp} with the number of the filter's user
//	                notification fd, when the profile has a listener; the
//	                parent takes the fd with pidfd_getfd (the process then
//	                only write()s, the one call a profile may not notify on)
//	parent → init   Message{seccomp-done} once the fd reached the listener,
//	                or Message{error}
//	init → parent   Message{hooks} once the mounts are in place, before
//	                pivot_root, when the spec has prestart or createRuntime
//	                hooks; the parent runs them and answers
//	                Message{hooks-done} or Message{error}
//	init → parent   Message{mount-source, index} for a bind mount whose
//	                source init cannot reach (root of a user namespace of
//	                its own); the parent answers Message{mount-source-done}
//	                with a detached clone of the source attached
//	                (SCM_RIGHTS), or Message{error}
//	init → parent   Message{ready} or Message{error}
//	parent → init   Message{start}
//	init            execve(): the socket closes on exec, the parent reads EOF
//	                (or Message{error} when execve failed)
const maxFrame = 16 << 20

// MessageType says what a Message is.
type MessageType string

const (
	MsgReady MessageType = "ready"
	MsgStart MessageType = "start"
	MsgError MessageType = "error"
	// MsgConsole carries the pty master of a terminal process.
	MsgConsole MessageType = "console"
	// MsgSeccomp names a seccomp user notification fd; the parent
	// answers MsgSeccompDone once the profile's listener has it.
	MsgSeccomp     MessageType = "seccomp"
	MsgSeccompDone MessageType = "seccomp-done"
	// MsgHooks asks the parent to run the prestart and createRuntime
	// hooks; it answers MsgHooksDone.
	MsgHooks     MessageType = "hooks"
	MsgHooksDone MessageType = "hooks-done"
	// MsgMountSource asks the parent for a clone of a spec mount's
	// source (Index); it answers MsgMountSourceDone with the fd.
	MsgMountSource     MessageType = "mount-source"
	MsgMountSourceDone MessageType = "mount-source-done"
)

// Message is what init and the parent say to each other after the config.
type Message struct {
	Type  MessageType `json:"type"`
	Error string      `json:"error,omitempty"`
	// Class is the errdefs class of Error, so that Create can return it
	// with the right code: "not_found", "invalid_argument", "not_implemented".
	Class string `json:"class,omitempty"`
	// Fd is a descriptor's number in the sending process (MsgSeccomp).
	Fd int `json:"fd,omitempty"`
	// Index is a spec mount's (MsgMountSource).
	Index int `json:"index,omitempty"`
	// Steps are the process's own step timings since its main began
	// (MsgReady, when the config asked for them; see package steptime).
	Steps string `json:"steps,omitempty"`
}

// Config is what a container process needs to set itself up: init
// builds the container from Spec; an exec (Exec true) has joined init's
// namespaces and only applies Process.
type Config struct {
	// ID and Bundle are the container's, for the state hooks get.
	ID     string         `json:"id"`
	Bundle string         `json:"bundle"`
	Spec   *ContainerSpec `json:"spec,omitempty"`
	Exec   bool           `json:"exec,omitempty"`
	// Process is the exec's process; init runs Spec.Process.
	Process *specs.Process `json:"process,omitempty"`
	// Rootfs is the absolute host path of the container's root.
	Rootfs string `json:"rootfs"`
	// NewUTS says whether init has its own UTS namespace, so the hostname is
	// set only where it cannot change the host's.
	NewUTS bool `json:"new_uts"`
	// Seccomp is the container's compiled linux.seccomp profile, for init
	// and every exec; the process only loads it.
	Seccomp *bpf.Program `json:"seccomp,omitempty"`
	// Personality and MemoryPolicy are the container's, which init and
	// every exec apply to themselves.
	Personality  *specs.LinuxPersonality  `json:"personality,omitempty"`
	MemoryPolicy *specs.LinuxMemoryPolicy `json:"memory_policy,omitempty"`
	// Affinity is the cpus the process runs on from its execve: an exec's
	// execCPUAffinity.final, or every cpu (best effort) when the shim is
	// pinned to fewer, as runc gives them back.
	Affinity           *unix.CPUSet `json:"affinity,omitempty"`
	AffinityBestEffort bool         `json:"affinity_best_effort,omitempty"`
	// IDMappedMounts are the indexes of the spec mounts that come as
	// detached idmapped mounts after the config, in this order.
	IDMappedMounts []int `json:"idmapped_mounts,omitempty"`
	// NoPivotRoot and NoNewKeyring are runc's options of those names.
	NoPivotRoot  bool `json:"no_pivot_root,omitempty"`
	NoNewKeyring bool `json:"no_new_keyring,omitempty"`
	// Steps asks for the process's step timings with its ready (the
	// shim logs them at debug level).
	Steps bool `json:"steps,omitempty"`
}

// WriteFrame writes v as one frame: its JSON after a 4-byte little-endian
// length.
func WriteFrame(w io.Writer, v any) error {
	payload, err := json.Marshal(v)
	if err != nil {
		return err
	}
	buf := make([]byte, 4+len(payload))
	binary.LittleEndian.PutUint32(buf, uint32(len(payload)))
	copy(buf[4:], payload)
	_, err = w.Write(buf)
	return err
}

// ReadFrame reads one frame into v; one over maxFrame is refused unread.
func ReadFrame(r io.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.LittleEndian.Uint32(hdr[:])
	if n > maxFrame {
		return fmt.Errorf("handshake frame of %d bytes exceeds %d", n, maxFrame)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return err
	}
	return json.Unmarshal(payload, v)
}

// classOf names err's errdefs class for the wire.
func classOf(err error) string {
	switch {
	case errdefs.IsNotFound(err):
		return "not_found"
	case errdefs.IsInvalidArgument(err):
		return "invalid_argument"
	case errdefs.IsNotImplemented(err):
		return "not_implemented"
	case errdefs.IsPermissionDenied(err):
		return "permission_denied"
	}
	return ""
}

// ErrorMessage is err as a message, with its errdefs class.
func ErrorMessage(err error) Message {
	return Message{Type: MsgError, Error: err.Error(), Class: classOf(err)}
}

// initError is an error init reported; it unwraps to its errdefs class so
// the task service maps it to the right code while keeping init's text.
type initError struct {
	msg   string
	class error
}

func (e *initError) Error() string { return e.msg }
func (e *initError) Unwrap() error { return e.class }

// ErrorFromMessage is the error an error message carries, in its errdefs
// class.
func ErrorFromMessage(m Message) error {
	var class error
	switch m.Class {
	case "not_found":
		class = errdefs.ErrNotFound
	case "invalid_argument":
		class = errdefs.ErrInvalidArgument
	case "not_implemented":
		class = errdefs.ErrNotImplemented
	case "permission_denied":
		class = errdefs.ErrPermissionDenied
	default:
		class = errdefs.ErrUnknown
	}
	return &initError{msg: m.Error, class: class}
}

// ErrUnexpectedMessage is a message out of the protocol's order.
var ErrUnexpectedMessage = errors.New("unexpected handshake message")
