package io

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

func seqOutput(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		b.WriteString(strconv.Itoa(i))
		b.WriteByte('\n')
	}
	return b.String()
}

func TestFifoOutput(t *testing.T) {
	tests := []struct {
		name    string
		script  string
		wantOut string
		wantErr string
		// lateReader: the client opens its side only after this happened.
		lateReader string // "", "exit" (child exited) or "delay"
	}{
		{name: "both streams", script: "echo hi; echo err >&2", wantOut: "hi\n", wantErr: "err\n"},
		{name: "no output", script: "true"},
		{name: "large stdout", script: "seq 1 40000; echo done >&2", wantOut: seqOutput(40000), wantErr: "done\n"},
		{
			name: "large both", script: "seq 1 30000 & seq 1 30000 >&2; wait",
			wantOut: seqOutput(30000), wantErr: seqOutput(30000),
		},
		{
			name: "reader opens after exit", script: "echo late; echo late-err >&2",
			wantOut: "late\n", wantErr: "late-err\n", lateReader: "exit",
		},
		{
			name: "reader opens late on a full pipe", script: "seq 1 60000; echo x >&2",
			wantOut: seqOutput(60000), wantErr: "x\n", lateReader: "delay",
		},
		{
			name: "child exits, descendant keeps writing", script: "(sleep 0.2; echo from-grandchild) & echo parent",
			wantOut: "parent\nfrom-grandchild\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := Config{Stdout: mkfifo(t, dir, "stdout"), Stderr: mkfifo(t, dir, "stderr")}
			p, err := New(context.Background(), cfg, -1, -1)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer p.Close()
			var outC, errC <-chan readResult
			if tc.lateReader == "" {
				outC, errC = readFifo(cfg.Stdout), readFifo(cfg.Stderr)
			}
			c := spawn(t, p, tc.script)
			switch tc.lateReader {
			case "exit":
				c.wait(t)
			case "delay":
				time.Sleep(200 * time.Millisecond)
			}
			if tc.lateReader != "" {
				outC, errC = readFifo(cfg.Stdout), readFifo(cfg.Stderr)
			}
			c.wait(t)
			waitIO(t, p)
			// Wait promised the reader has read the bytes; it gets EOF
			// without anything else happening.
			if got := recvRead(t, "stdout", outC); got != tc.wantOut {
				t.Errorf("stdout: got %d bytes %.40q, want %d bytes %.40q", len(got), got, len(tc.wantOut), tc.wantOut)
			}
			if got := recvRead(t, "stderr", errC); got != tc.wantErr {
				t.Errorf("stderr: got %d bytes %.40q, want %d bytes %.40q", len(got), got, len(tc.wantErr), tc.wantErr)
			}
			closeTwice(t, p)
		})
	}
}

func TestStdin(t *testing.T) {
	tests := []struct {
		name   string
		script string
		// input is written by the client, which then closes its side;
		// nil: the client never opens the stdin fifo.
		input      *string
		closeStdin bool
		wantOut    string
	}{
		{name: "head reads one line", script: "head -n1", input: ptr("first\nsecond\n"), wantOut: "first\n"},
		{name: "CloseStdin gives cat EOF", script: "cat", input: ptr("abc\n"), closeStdin: true, wantOut: "abc\n"},
		{name: "CloseStdin before the client opened", script: "cat; echo eof", closeStdin: true, wantOut: "eof\n"},
		{
			name: "large input", script: "cat", input: ptr(seqOutput(40000)), closeStdin: true,
			wantOut: seqOutput(40000),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := Config{Stdin: mkfifo(t, dir, "stdin"), Stdout: mkfifo(t, dir, "stdout")}
			p, err := New(context.Background(), cfg, -1, -1)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer p.Close()
			outC := readFifo(cfg.Stdout)
			c := spawn(t, p, tc.script)
			if tc.input != nil {
				w := openStdin(t, cfg.Stdin)
				_, err := w.WriteString(*tc.input)
				w.Close()
				if err != nil {
					t.Fatalf("write stdin: %v", err)
				}
			}
			if tc.closeStdin {
				// As with runc-v2, the client closing its side is not EOF
				// for the child while CloseIO has not come.
				if tc.input != nil && !c.running(100*time.Millisecond) {
					t.Fatal("child saw EOF before CloseStdin")
				}
				if err := p.CloseStdin(); err != nil {
					t.Fatalf("CloseStdin: %v", err)
				}
			}
			c.wait(t)
			waitIO(t, p)
			if got := recvRead(t, "stdout", outC); got != tc.wantOut {
				t.Errorf("stdout: got %d bytes %.40q, want %d bytes %.40q", len(got), got, len(tc.wantOut), tc.wantOut)
			}
			closeTwice(t, p)
		})
	}
}

func ptr(s string) *string { return &s }

func TestFileOutput(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain.log")
	appended := filepath.Join(dir, "out.log")
	for _, f := range []string{plain, appended} {
		if err := os.WriteFile(f, []byte("old\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name             string
		stdout, stderr   string
		outPath, errPath string
		wantOut, wantErr string
	}{
		{
			name: "file URIs append and create", stdout: "file://" + appended, stderr: "file://" + dir + "/sub/deeper/err.log",
			outPath: appended, errPath: filepath.Join(dir, "sub/deeper/err.log"),
			wantOut: "old\nout\n", wantErr: "err\n",
		},
		{
			name: "plain path to a regular file appends", stdout: plain, stderr: "",
			outPath: plain, wantOut: "old\nout\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(context.Background(), Config{Stdout: tc.stdout, Stderr: tc.stderr}, -1, -1)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer p.Close()
			c := spawn(t, p, "echo out; echo err >&2")
			c.wait(t)
			waitIO(t, p)
			for _, f := range []struct{ path, want string }{{tc.outPath, tc.wantOut}, {tc.errPath, tc.wantErr}} {
				if f.path == "" {
					continue
				}
				got, err := os.ReadFile(f.path)
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != f.want {
					t.Errorf("%s: got %q, want %q", f.path, got, f.want)
				}
			}
			if tc.errPath != "" {
				st, err := os.Stat(tc.errPath)
				if err != nil {
					t.Fatal(err)
				}
				if perm := st.Mode().Perm(); perm&0o007 != 0 {
					t.Errorf("%s: mode %v is open to others", tc.errPath, perm)
				}
			}
			closeTwice(t, p)
		})
	}
}

func TestUnconnectedIsDevNull(t *testing.T) {
	p, err := New(context.Background(), Config{}, 4242, 4242)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer p.Close()
	var null unix.Stat_t
	if err := unix.Stat(os.DevNull, &null); err != nil {
		t.Fatal(err)
	}
	in, out, errf := p.ChildFiles()
	for i, f := range []*os.File{in, out, errf} {
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			t.Fatalf("fd %d: %v", i, err)
		}
		if st.Rdev != null.Rdev || st.Mode&unix.S_IFMT != unix.S_IFCHR {
			t.Errorf("fd %d is not %s", i, os.DevNull)
		}
		if st.Uid != null.Uid {
			t.Errorf("fd %d: %s was chowned to %d", i, os.DevNull, st.Uid)
		}
	}
	c := spawn(t, p, "cat; echo out; echo err >&2")
	c.wait(t)
	waitIO(t, p)
	closeTwice(t, p)
}

func TestChildEndsChowned(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	dir := t.TempDir()
	cfg := Config{Stdin: mkfifo(t, dir, "stdin"), Stdout: mkfifo(t, dir, "stdout")}
	p, err := New(context.Background(), cfg, 4242, 4343)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer closeTwice(t, p)
	defer p.CloseChildEnds()
	in, out, _ := p.ChildFiles()
	for name, f := range map[string]*os.File{"stdin": in, "stdout": out} {
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != 4242 || st.Gid != 4343 {
			t.Errorf("%s pipe owned by %d:%d, want 4242:4343", name, st.Uid, st.Gid)
		}
		flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
		if err != nil {
			t.Fatal(err)
		}
		if flags&unix.O_NONBLOCK != 0 {
			t.Errorf("%s: the child's end is non-blocking", name)
		}
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	fifo := mkfifo(t, dir, "fifo")
	tests := []struct {
		name  string
		cfg   Config
		class func(error) bool
	}{
		{name: "terminal", cfg: Config{Terminal: true}, class: errdefs.IsNotImplemented},
		{name: "unknown scheme", cfg: Config{Stdout: "tcp://host:1/x"}, class: errdefs.IsInvalidArgument},
		{name: "relative path", cfg: Config{Stderr: "relative/log"}, class: errdefs.IsInvalidArgument},
		{name: "file URI as stdin", cfg: Config{Stdin: "file:///tmp/x"}, class: errdefs.IsInvalidArgument},
		{name: "logger only for stderr", cfg: Config{Stdout: fifo, Stderr: "binary:///bin/true"}, class: errdefs.IsInvalidArgument},
		{name: "logger without namespace", cfg: Config{Stdout: "binary:///bin/true"}, class: errdefs.IsInvalidArgument},
		{name: "missing stdin fifo", cfg: Config{Stdin: dir + "/nope"}, class: errdefs.IsNotFound},
		{
			name: "missing stderr fifo after good ones", cfg: Config{Stdin: fifo, Stdout: fifo, Stderr: dir + "/nope"},
			class: errdefs.IsNotFound,
		},
		{name: "file URI in a missing root", cfg: Config{Stdout: "file:///proc/nope/x.log"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fds, gs := countFDs(t), runtime.NumGoroutine()
			p, err := New(context.Background(), tc.cfg, -1, -1)
			if err == nil {
				p.Close()
				t.Fatal("New succeeded")
			}
			if tc.class != nil && !tc.class(err) {
				t.Errorf("error %q has the wrong class", err)
			}
			settled(t, fds, gs)
		})
	}
}

// TestCloseReleasesEverything runs each way a Pipes can end and checks
// that no fd and no goroutine outlives Close.
func TestCloseReleasesEverything(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, dir string)
	}{
		{name: "full run", run: func(t *testing.T, dir string) {
			cfg := Config{Stdin: mkfifo(t, dir, "in"), Stdout: mkfifo(t, dir, "out"), Stderr: mkfifo(t, dir, "err")}
			p := mustNew(t, cfg)
			outC, errC := readFifo(cfg.Stdout), readFifo(cfg.Stderr)
			c := spawn(t, p, "head -c 3; echo err >&2")
			w := openStdin(t, cfg.Stdin)
			w.WriteString("abc")
			w.Close()
			c.wait(t)
			waitIO(t, p)
			recvRead(t, "stdout", outC)
			recvRead(t, "stderr", errC)
			closeTwice(t, p)
		}},
		{name: "spawn failed", run: func(t *testing.T, dir string) {
			p := mustNew(t, Config{Stdin: mkfifo(t, dir, "in"), Stdout: mkfifo(t, dir, "out"), Stderr: "file://" + dir + "/log"})
			p.CloseChildEnds()
			p.CloseChildEnds()
			closeTwice(t, p)
			p.Start() // after Close: must not start anything
		}},
		{name: "close while a copy is blocked on a reader that never came", run: func(t *testing.T, dir string) {
			p := mustNew(t, Config{Stdin: mkfifo(t, dir, "in"), Stdout: mkfifo(t, dir, "out")})
			c := spawn(t, p, "head -c 300000 /dev/zero")
			if !c.running(100 * time.Millisecond) {
				t.Fatal("child finished though nobody read its output")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			if err := p.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Wait = %v, want deadline exceeded", err)
			}
			closeTwice(t, p)
			// With its pipe's reader gone the child fails with EPIPE.
			select {
			case <-c.exited:
			case <-time.After(testTimeout):
				t.Fatal("child still blocked after Close")
			}
			c.exited <- nil
		}},
		{name: "client reader goes away mid-stream", run: func(t *testing.T, dir string) {
			out := mkfifo(t, dir, "out")
			p := mustNew(t, Config{Stdout: out})
			c := spawn(t, p, "echo first; sleep 0.2; echo second")
			r, err := os.OpenFile(out, os.O_RDONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 6)
			if _, err := r.Read(buf); err != nil || string(buf) != "first\n" {
				t.Fatalf("read %q, %v", buf, err)
			}
			r.Close()
			// The shim's own read handle keeps the write from failing: the
			// copy finishes without an error.
			c.wait(t)
			waitIO(t, p)
			closeTwice(t, p)
		}},
	}
	// Warm up what the runtime and os/exec open once per process.
	tests[0].run(t, t.TempDir())
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fds, gs := countFDs(t), runtime.NumGoroutine()
			tc.run(t, t.TempDir())
			settled(t, fds, gs)
		})
	}
}

func mustNew(t *testing.T, cfg Config) *Pipes {
	t.Helper()
	p, err := New(context.Background(), cfg, -1, -1)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func TestCopyErrorDrainsChild(t *testing.T) {
	// A full disk stands for every sink that cannot be written: the child
	// must still be able to exit, and Wait must say what happened.
	p := mustNew(t, Config{Stdout: "/dev/full"})
	c := spawn(t, p, "seq 1 30000")
	c.wait(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := p.Wait(ctx); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Wait = %v, want ENOSPC", err)
	}
	closeTwice(t, p)
}
