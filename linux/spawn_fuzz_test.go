package linux

import (
	"strings"
	"testing"
)

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
