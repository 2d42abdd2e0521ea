package linux

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzHandshakeFrame feeds arbitrary bytes to the frame reader: it must
// never panic or allocate past maxFrame, whatever a broken or hostile init
// writes.
func FuzzHandshakeFrame(f *testing.F) {
	var ok bytes.Buffer
	_ = writeFrame(&ok, message{Type: msgReady})
	f.Add(ok.Bytes())
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{2, 0, 0, 0, '{', '}'})
	f.Fuzz(func(t *testing.T, data []byte) {
		var m message
		_ = readFrame(bytes.NewReader(data), &m)
	})
}

// FuzzHandshakePidLine: the preamble's reply is either a positive pid or an
// error, never both and never a panic.
func FuzzHandshakePidLine(f *testing.F) {
	f.Add("pid 1\n")
	f.Add("error boom\n")
	f.Add("pid -3\n")
	f.Fuzz(func(t *testing.T, s string) {
		pid, err := readPid(strings.NewReader(s))
		if err == nil && pid <= 0 {
			t.Fatalf("pid %d without error for %q", pid, s)
		}
	})
}
