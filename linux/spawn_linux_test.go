package linux

import (
	"io"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

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

func TestExecCPUAffinityParsed(t *testing.T) {
	a, err := parseCPUAffinity(&specs.CPUAffinity{Initial: "0", Final: "0-1"})
	if err != nil || a.initial.Count() != 1 || a.final.Count() != 2 {
		t.Fatalf("parse: %+v, %v", a, err)
	}
	if _, err := parseCPUAffinity(&specs.CPUAffinity{Final: "x"}); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "execCPUAffinity.final") {
		t.Fatalf("bad list: %v", err)
	}
}
