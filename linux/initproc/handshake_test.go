package initproc

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestHandshakeFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	in := Message{Type: MsgError, Error: `exec: "/bin/nope": stat /bin/nope: no such file or directory`, Class: "not_found"}
	if err := WriteFrame(&buf, in); err != nil {
		t.Fatal(err)
	}
	var out Message
	if err := ReadFrame(&buf, &out); err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Fatalf("got %+v; want %+v", out, in)
	}
	err := ErrorFromMessage(out)
	if !errdefs.IsNotFound(err) || err.Error() != in.Error {
		t.Fatalf("ErrorFromMessage = %v (not found: %v)", err, errdefs.IsNotFound(err))
	}
}

func TestHandshakeFrameTooLarge(t *testing.T) {
	r := bytes.NewReader([]byte{0xff, 0xff, 0xff, 0x7f})
	var m Message
	if err := ReadFrame(r, &m); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("ReadFrame = %v; want size error", err)
	}
}

func TestHandshakeClassRoundTrip(t *testing.T) {
	for _, class := range []error{errdefs.ErrNotFound, errdefs.ErrInvalidArgument, errdefs.ErrNotImplemented, errdefs.ErrPermissionDenied} {
		err := fmt.Errorf("wrapped: %w", class)
		back := ErrorFromMessage(Message{Type: MsgError, Error: err.Error(), Class: classOf(err)})
		if !errors.Is(back, class) {
			t.Errorf("class %v lost: %v", class, back)
		}
	}
}
