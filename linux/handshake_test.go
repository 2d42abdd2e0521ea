package linux

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestHandshakeFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	in := message{Type: msgError, Error: `exec: "/bin/nope": stat /bin/nope: no such file or directory`, Class: "not_found"}
	if err := writeFrame(&buf, in); err != nil {
		t.Fatal(err)
	}
	var out message
	if err := readFrame(&buf, &out); err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Fatalf("got %+v; want %+v", out, in)
	}
	err := errorFromMessage(out)
	if !errdefs.IsNotFound(err) || err.Error() != in.Error {
		t.Fatalf("errorFromMessage = %v (not found: %v)", err, errdefs.IsNotFound(err))
	}
}

func TestHandshakeFrameTooLarge(t *testing.T) {
	r := bytes.NewReader([]byte{0xff, 0xff, 0xff, 0x7f})
	var m message
	if err := readFrame(r, &m); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("readFrame = %v; want size error", err)
	}
}

func TestHandshakeClassRoundTrip(t *testing.T) {
	for _, class := range []error{errdefs.ErrNotFound, errdefs.ErrInvalidArgument, errdefs.ErrNotImplemented, errdefs.ErrPermissionDenied} {
		err := fmt.Errorf("wrapped: %w", class)
		back := errorFromMessage(message{Type: msgError, Error: err.Error(), Class: classOf(err)})
		if !errors.Is(back, class) {
			t.Errorf("class %v lost: %v", class, back)
		}
	}
}

// readPid reads the preamble's reply line as spawn does.
func readPid(r io.Reader) (int, error) {
	line, err := readPreambleLine(r)
	if err != nil {
		return 0, err
	}
	return parsePidLine(line)
}

func TestHandshakePidLine(t *testing.T) {
	tests := []struct {
		in      string
		pid     int
		wantErr string
	}{
		{"pid 42\n", 42, ""},
		{"error nsexec: unshare(0x20000): operation not permitted\n", 0, "unshare"},
		{"", 0, "before reporting its pid"},
		{"pid x\n", 0, "bad pid"},
		{"hello\n", 0, "unexpected line"},
	}
	for _, tt := range tests {
		pid, err := readPid(strings.NewReader(tt.in))
		if tt.wantErr == "" {
			if err != nil || pid != tt.pid {
				t.Errorf("readPid(%q) = %d, %v", tt.in, pid, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("readPid(%q) error = %v; want %q", tt.in, err, tt.wantErr)
		}
	}
}

func TestStateProcessStartTime(t *testing.T) {
	st, err := processStartTime(1)
	if err != nil || st == 0 {
		t.Fatalf("processStartTime(1) = %d, %v", st, err)
	}
}
