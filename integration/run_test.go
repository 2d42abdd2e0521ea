package integration

import (
	"strings"
	"testing"
)

// Case 1: output and a non-zero exit code travel back, and the task events
// come in lifecycle order with the exit status.
func TestRunExitCode(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		tc := newCase(t, tg, "exit3")
		res := tc.run("", "/bin/sh", "-c", "echo hi; exit 3")
		if res.ExitCode != 3 || res.Stdout != "hi\n" {
			t.Fatalf("want stdout \"hi\\n\" and exit code 3:\n%s", res)
		}
		tc.lifecycle(3)
	})
}

// Case 2: exit 0, stdout and stderr kept apart, a large write arrives whole.
func TestRunOutput(t *testing.T) {
	const big = 100 * 1024
	cases := []struct {
		name       string
		cmd        []string
		wantStdout string
		wantStderr string // substring; ctr adds nothing of its own on success
	}{
		{name: "true", cmd: []string{"/bin/true"}},
		{name: "stderr", cmd: []string{"/bin/sh", "-c", "echo out; echo err >&2"}, wantStdout: "out\n", wantStderr: "err\n"},
		{name: "big", cmd: []string{"/bin/sh", "-c", "head -c 102400 /dev/zero | tr '\\0' a"}, wantStdout: strings.Repeat("a", big)},
	}
	forEachTarget(t, func(t *testing.T, tg target) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				tc := newCase(t, tg, c.name)
				res := tc.run("", c.cmd...)
				if res.ExitCode != 0 {
					t.Fatalf("want exit code 0:\n%s", res)
				}
				if res.Stdout != c.wantStdout {
					t.Errorf("stdout: got %d bytes, want %d bytes %q...\n%s", len(res.Stdout), len(c.wantStdout), clip(c.wantStdout, 20), res)
				}
				if !strings.Contains(res.Stderr, c.wantStderr) {
					t.Errorf("stderr: want %q in it\n%s", c.wantStderr, res)
				}
				tc.lifecycle(0)
			})
		}
	})
}

// Case 4: stdin reaches the container. ctr never closes the container's
// stdin at EOF, so the commands stop reading on their own.
func TestStdin(t *testing.T) {
	cases := []struct {
		name  string
		stdin string
		cmd   []string
		want  string
	}{
		{name: "head", stdin: "x\n", cmd: []string{"/bin/head", "-n1"}, want: "x\n"},
		{name: "read2", stdin: "a\nb\n", cmd: []string{"/bin/sh", "-c", "read l1; read l2; echo $l2$l1"}, want: "ba\n"},
	}
	forEachTarget(t, func(t *testing.T, tg target) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				tc := newCase(t, tg, "stdin-"+c.name)
				res := tc.run(c.stdin, c.cmd...)
				if res.ExitCode != 0 || res.Stdout != c.want {
					t.Fatalf("want stdout %q and exit code 0:\n%s", c.want, res)
				}
				tc.lifecycle(0)
			})
		}
	})
}
