package initproc

import (
	"bytes"
	"testing"
)

// FuzzHandshakeFrame feeds arbitrary bytes to the frame reader: it must
// never panic or allocate past maxFrame, whatever a broken or hostile init
// writes.
func FuzzHandshakeFrame(f *testing.F) {
	var ok bytes.Buffer
	_ = WriteFrame(&ok, Message{Type: MsgReady})
	f.Add(ok.Bytes())
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{2, 0, 0, 0, '{', '}'})
	f.Fuzz(func(t *testing.T, data []byte) {
		var m Message
		_ = ReadFrame(bytes.NewReader(data), &m)
	})
}
