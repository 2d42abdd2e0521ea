package nsexec

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/minishim/containerd-shim-mini-v2/linux/initproc"
	"golang.org/x/sys/unix"
)

// The preamble and the Go side number the protocol alike: the shim sends
// initproc.Handshake, the preamble compares MINI_HANDSHAKE.
func TestHandshakeNumbersAgree(t *testing.T) {
	if handshake != initproc.Handshake {
		t.Fatalf("nsexec.h says handshake %d, initproc.Handshake %d", handshake, initproc.Handshake)
	}
}

// A process started with another handshake number stops in the preamble,
// before the Go runtime, and tells the shim why: an init binary left over
// from another build fails Create plainly.
func TestHandshakeMismatchRefused(t *testing.T) {
	for _, tt := range []struct {
		name, env string
		want      string
	}{
		{"other number", "_MINI_HANDSHAKE=" + strconv.Itoa(initproc.Handshake+1), "the shim " + strconv.Itoa(initproc.Handshake+1) + ":"},
		{"none", "", "the shim none:"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = []string{"_MINI_SYNC_FD=3"}
			if tt.env != "" {
				cmd.Env = append(cmd.Env, tt.env)
			}
			cmd.ExtraFiles = []*os.File{w}
			err = cmd.Run()
			w.Close()
			out, _ := io.ReadAll(r)
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Errorf("exit: %v; want status 1", err)
			}
			line := string(out)
			if !strings.HasPrefix(line, "error ") || !strings.Contains(line, "speaks handshake "+strconv.Itoa(initproc.Handshake)) || !strings.Contains(line, tt.want) {
				t.Errorf("preamble said %q; want an error naming both numbers (%q)", line, tt.want)
			}
		})
	}
}

// With the number it was built with, the preamble goes on past the check
// and reads its bootstrap: here it finds the parent's side shut.
func TestHandshakeMatchAccepted(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "parent"), os.NewFile(uintptr(fds[1]), "child")
	defer ours.Close()
	if err := unix.Shutdown(fds[0], unix.SHUT_WR); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = []string{"_MINI_SYNC_FD=3", "_MINI_HANDSHAKE=" + strconv.Itoa(initproc.Handshake)}
	cmd.ExtraFiles = []*os.File{theirs}
	err = cmd.Run()
	theirs.Close()
	out, _ := io.ReadAll(ours)
	if line := string(out); strings.Contains(line, "handshake") || !strings.Contains(line, "read bootstrap") {
		t.Errorf("preamble said %q (%v); want it past the handshake check, reading its bootstrap", line, err)
	}
}
