package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// loggerScript is a logging binary as containerd's shims start one: the
// container's stdout on fd 3, its stderr on fd 4, and fd 5 to close once
// ready; the query of the URI arrives as "key value" arguments and
// CONTAINER_ID and CONTAINER_NAMESPACE as environment. It ignores SIGTERM
// (what a shim sends at delete) so that it always finishes copying and
// writes its done file.
const loggerScript = `#!/bin/sh
trap '' TERM
out="$2"
echo $$ > "$out.pid"
printf 'args=%s\nid=%s\nns=%s\n' "$*" "$CONTAINER_ID" "$CONTAINER_NAMESPACE" > "$out.info"
exec 5>&-
sed 's/^/out: /' <&3 > "$out.stdout" &
sed 's/^/err: /' <&4 > "$out.stderr"
wait
echo done > "$out.done"
`

// Case 16: --log-uri. file:// appends the container's output to a file;
// binary:// hands it to a logging program; a logging program that does
// not exist fails the run with an error naming it.
func TestLogURI(t *testing.T) {
	const cmd = "echo to-log; echo err-log >&2"
	forEachTarget(t, func(t *testing.T, tg target) {
		t.Run("file", func(t *testing.T) {
			tc := newCase(t, tg, "logfile")
			path := filepath.Join(t.TempDir(), "ctr.log")
			res := tc.ctr("", tc.runArgs([]string{"--rm", "--log-uri", "file://" + path}, "", "/bin/sh", "-c", cmd)...)
			if res.ExitCode != 0 || res.Stdout != "" {
				t.Fatalf("want exit code 0 and no output on ctr's stdout:\n%s", res)
			}
			tc.checkLogFile(path, tc.logFileWant()...)
			tc.lifecycle(0)
		})
		t.Run("exec-file", func(t *testing.T) {
			tc := newCase(t, tg, "logexec")
			tc.startDetached("/bin/sleep", "1000")
			path := filepath.Join(t.TempDir(), "exec.log")
			res := tc.ctr("", tc.execArgs([]string{"--log-uri", "file://" + path}, "elog", "/bin/sh", "-c", cmd)...)
			if res.ExitCode != 0 {
				t.Fatalf("exec: %s", res)
			}
			tc.checkLogFile(path, tc.logFileWant()...)
		})
		t.Run("binary", func(t *testing.T) {
			tc := newCase(t, tg, "logbin")
			dir := t.TempDir()
			logger := filepath.Join(dir, "logger.sh")
			if err := os.WriteFile(logger, []byte(loggerScript), 0o755); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "out")
			res := tc.ctr("", tc.runArgs([]string{"--rm", "--log-uri", "binary://" + logger + "?out=" + out}, "", "/bin/sh", "-c", cmd)...)
			if res.ExitCode != 0 || res.Stdout != "" {
				t.Fatalf("want exit code 0 and no output on ctr's stdout:\n%s", res)
			}
			waitLoggerDone(t, out)
			for file, want := range map[string]string{
				".stdout": "out: to-log\n",
				".stderr": "err: err-log\n",
				".info":   "args=out " + out + "\nid=" + tc.id + "\nns=" + tc.c.Namespace + "\n",
			} {
				if data, err := os.ReadFile(out + file); err != nil || string(data) != want {
					t.Errorf("logger's %s: want %q, got %q (%v)", file, want, data, err)
				}
			}
			tc.lifecycle(0)
		})
		t.Run("missing-binary", func(t *testing.T) {
			tc := newCase(t, tg, "lognobin")
			logger := filepath.Join(t.TempDir(), "no-such-logger")
			res := tc.ctr("", tc.runArgs([]string{"--rm", "--log-uri", "binary://" + logger}, "", "/bin/true")...)
			if res.ExitCode == 0 || !strings.Contains(res.Stderr, logger) || !strings.Contains(res.Stderr, "no such file or directory") {
				t.Errorf("run with a missing logger should fail naming %s and \"no such file or directory\":\n%s", logger, res)
			}
		})
	})
}

// logFileWant is what a file:// log of `echo to-log; echo err-log >&2`
// must hold. runc-v2 (1.6 and 2.4) writes both streams through one file
// that its stdout copier closes when done, so stderr written after that
// is lost (the shim logs "error copying stderr"); only ours is held to
// both lines.
func (tc *tcase) logFileWant() []string {
	if tc.tg.runtime == MiniRuntime {
		return []string{"to-log\n", "err-log\n"}
	}
	return []string{"to-log\n"}
}

// checkLogFile checks that the file:// log at path holds every line of
// want, in any order (two streams go into one file). Our shim publishes an
// exit only once the output is written, so the file must be complete when
// ctr returns; runc-v2 2.x publishes the exit at once and copies on, so
// for other runtimes the file gets a few seconds.
func (tc *tcase) checkLogFile(path string, want ...string) {
	tc.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		data, err := os.ReadFile(path)
		missing := []string{}
		for _, w := range want {
			if !strings.Contains(string(data), w) {
				missing = append(missing, w)
			}
		}
		if err == nil && len(missing) == 0 {
			return
		}
		if tc.tg.runtime == MiniRuntime || time.Now().After(deadline) {
			tc.t.Errorf("log file %s: want %q in it, got %q (%v)", path, missing, data, err)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitLoggerDone waits for the logger writing to out to finish and exit:
// nobody else waits for it, so a logger left running would go unnoticed.
func waitLoggerDone(t *testing.T, out string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, doneErr := os.Stat(out + ".done")
		data, _ := os.ReadFile(out + ".pid")
		pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		alive := pid > 0 && syscall.Kill(pid, 0) == nil
		if doneErr == nil && pid > 0 && !alive {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("logger %s: done file: %v, pid %d alive: %v", out, doneErr, pid, alive)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
