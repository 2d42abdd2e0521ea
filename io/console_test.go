package io

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// openPty opens a new pty pair the way a container process does before it
// sends the master: plain blocking fds. pollable instead opens the master
// through os, which registers it with the runtime poller.
func openPty(t *testing.T, pollable bool) (master, slave *os.File) {
	t.Helper()
	if pollable {
		m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
		if err != nil {
			t.Fatalf("open /dev/ptmx: %v", err)
		}
		master = m
	} else {
		fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatalf("open /dev/ptmx: %v", err)
		}
		master = os.NewFile(uintptr(fd), "/dev/ptmx")
	}
	var n int
	err := fdControl(master, func(fd int) error {
		if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
			return fmt.Errorf("unlock pty: %w", err)
		}
		var err error
		n, err = unix.IoctlGetInt(fd, unix.TIOCGPTN)
		return err
	})
	if err != nil {
		master.Close()
		t.Fatal(err)
	}
	path := fmt.Sprintf("/dev/pts/%d", n)
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		master.Close()
		t.Fatalf("open %s: %v", path, err)
	}
	return master, os.NewFile(uintptr(fd), path)
}

// setTermios changes the terminal's attributes through its slave.
func setTermios(t *testing.T, slave *os.File, change func(*unix.Termios)) {
	t.Helper()
	err := fdControl(slave, func(fd int) error {
		tt, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			return err
		}
		change(tt)
		return unix.IoctlSetTermios(fd, unix.TCSETS, tt)
	})
	if err != nil {
		t.Fatalf("set terminal attributes: %v", err)
	}
}

func fdControl(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// spawnTTY runs script under /bin/sh as a session leader with slave as
// its controlling terminal and stdio, then closes the test's slave so that
// only the child holds it.
func spawnTTY(t *testing.T, slave *os.File, script string) *child {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.Env = []string{"PATH=/usr/bin:/bin", "PS1=$ ", "TERM=dumb"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	err := cmd.Start()
	slave.Close()
	if err != nil {
		t.Fatalf("start %q: %v", script, err)
	}
	c := &child{cmd: cmd, exited: make(chan error, 1), session: true}
	go func() { c.exited <- cmd.Wait() }()
	t.Cleanup(c.kill)
	return c
}

func mustNewConsole(t *testing.T, cfg Config, master *os.File) *Console {
	t.Helper()
	cfg.Terminal = true
	c, err := NewConsole(context.Background(), cfg, master)
	if err != nil {
		t.Fatalf("NewConsole: %v", err)
	}
	return c
}

func wantContains(subs ...string) func(*testing.T, string) {
	return func(t *testing.T, out string) {
		t.Helper()
		for _, s := range subs {
			if !strings.Contains(out, s) {
				t.Errorf("output %q lacks %q", out, s)
			}
		}
	}
}

func TestConsole(t *testing.T) {
	const big = 100 << 10
	tests := []struct {
		name     string
		script   string
		pollable bool      // master already registered with the poller
		resize   [2]uint32 // width, height; zero: no resize
		stdin    bool      // connect a stdin fifo
		input    string    // what the client writes into it
		// closeStdin: the client closes its side and calls CloseStdin;
		// otherwise it keeps its side open until the child exited.
		closeStdin bool
		setup      func(*unix.Termios) // changes the terminal before the child starts
		check      func(*testing.T, string)
	}{
		{name: "output", script: "echo hi", check: wantContains("hi\r\n")},
		{name: "output via a pollable master", script: "echo hi", pollable: true, check: wantContains("hi\r\n")},
		{name: "resize", script: "echo hi; stty size", resize: [2]uint32{80, 24}, check: wantContains("hi\r\n", "24 80\r\n")},
		{
			name: "interactive shell", script: "exec /bin/sh -i", stdin: true,
			input: "echo $((6*7))\nexit\n", check: wantContains("42\r\n"),
		},
		{
			name: "CloseStdin ends cat with VEOF", script: "cat; echo done", stdin: true,
			input: "abc\n", closeStdin: true, check: wantContains("abc\r\n", "done\r\n"),
		},
		{name: "CloseStdin without a stdin fifo", script: "cat; echo done", closeStdin: true, check: wantContains("done\r\n")},
		{
			// Set after NewConsole: the EOF character is looked up when
			// it is sent. A ^D would be plain data to cat here.
			name: "the terminal's own EOF character", script: "cat; echo done", stdin: true, closeStdin: true,
			setup: func(tt *unix.Termios) { tt.Cc[unix.VEOF] = 0x05 }, check: wantContains("done\r\n"),
		},
		{
			name: "large output just before exit", script: fmt.Sprintf("head -c %d /dev/zero | tr '\\0' a", big),
			check: func(t *testing.T, out string) {
				if len(out) != big || strings.Trim(out, "a") != "" {
					t.Errorf("got %d bytes (%d of them 'a'), want %d 'a'", len(out), strings.Count(out, "a"), big)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := Config{Stdout: mkfifo(t, dir, "out"), Stderr: filepath.Join(dir, "stderr is ignored")}
			if tc.stdin {
				cfg.Stdin = mkfifo(t, dir, "in")
			}
			outC := readFifo(cfg.Stdout)
			master, slave := openPty(t, tc.pollable)
			c := mustNewConsole(t, cfg, master)
			defer c.Close()
			if tc.resize != [2]uint32{} {
				if err := c.Resize(tc.resize[0], tc.resize[1]); err != nil {
					t.Fatalf("Resize: %v", err)
				}
			}
			if tc.setup != nil {
				setTermios(t, slave, tc.setup)
			}
			var in *os.File
			if tc.stdin {
				in = openStdin(t, cfg.Stdin)
				defer in.Close()
			}
			child := spawnTTY(t, slave, tc.script)
			if in != nil && tc.input != "" {
				if _, err := in.WriteString(tc.input); err != nil {
					t.Fatalf("write stdin: %v", err)
				}
			}
			if tc.closeStdin {
				if in != nil {
					in.Close()
				}
				if err := c.CloseStdin(); err != nil {
					t.Fatalf("CloseStdin: %v", err)
				}
			}
			child.wait(t)
			waitIO(t, c)
			out := recvRead(t, "stdout", outC)
			tc.check(t, out)
			closeTwice(t, c)
		})
	}
}

func TestConsoleOutputTargets(t *testing.T) {
	tests := []struct {
		name string
		// stdout builds cfg.Stdout and returns the file the output lands
		// in ("" when it is discarded).
		stdout func(dir string) (uri, log string)
		want   string
	}{
		{name: "none", stdout: func(string) (string, string) { return "", "" }},
		{name: "file", want: "hi\r\n", stdout: func(dir string) (string, string) {
			log := filepath.Join(dir, "logs", "out.log")
			return "file://" + log, log
		}},
		{name: "binary logger", want: "hi\r\n", stdout: func(dir string) (string, string) {
			log := filepath.Join(dir, "out.log")
			return shLogger("binary", catLogger, log, filepath.Join(dir, "err.log"), filepath.Join(dir, "env")), log
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			uri, log := tc.stdout(t.TempDir())
			master, slave := openPty(t, false)
			c := mustNewConsole(t, Config{Stdout: uri, ContainerID: "c1", Namespace: "ns"}, master)
			defer c.Close()
			// Enough output to block the child if nothing drained it.
			child := spawnTTY(t, slave, "head -c 200000 /dev/zero; echo; echo hi")
			child.wait(t)
			waitIO(t, c)
			closeTwice(t, c)
			if log == "" {
				return
			}
			waitFile(t, log, strings.Repeat("\x00", 200000)+"\r\n"+tc.want)
		})
	}
}

func TestNewConsoleErrors(t *testing.T) {
	dir := t.TempDir()
	fifo := mkfifo(t, dir, "fifo")
	tests := []struct {
		name  string
		cfg   Config
		class func(error) bool
	}{
		{name: "file URI as stdin", cfg: Config{Stdin: "file:///tmp/x"}, class: errdefs.IsInvalidArgument},
		{name: "unknown scheme", cfg: Config{Stdout: "tcp://host:1/x"}, class: errdefs.IsInvalidArgument},
		{name: "missing stdin fifo", cfg: Config{Stdin: dir + "/nope", Stdout: fifo}, class: errdefs.IsNotFound},
		{name: "logger without namespace", cfg: Config{Stdin: fifo, Stdout: "binary:///bin/true"}, class: errdefs.IsInvalidArgument},
		{name: "missing stdout fifo", cfg: Config{Stdout: dir + "/nope"}, class: errdefs.IsNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fds, gs := countFDs(t), runtime.NumGoroutine()
			master, slave := openPty(t, false)
			defer slave.Close()
			tc.cfg.Terminal = true
			c, err := NewConsole(context.Background(), tc.cfg, master)
			if err == nil {
				c.Close()
				t.Fatal("NewConsole succeeded")
			}
			if !tc.class(err) {
				t.Errorf("NewConsole = %v: wrong class", err)
			}
			if err := master.Close(); !errors.Is(err, os.ErrClosed) {
				t.Errorf("master still open after a failed NewConsole (Close = %v)", err)
			}
			slave.Close()
			settled(t, fds, gs)
		})
	}
	t.Run("no master", func(t *testing.T) {
		if _, err := NewConsole(context.Background(), Config{Terminal: true}, nil); !errdefs.IsInvalidArgument(err) {
			t.Errorf("NewConsole(nil) = %v, want invalid argument", err)
		}
	})
	t.Run("New points to NewConsole", func(t *testing.T) {
		_, err := New(context.Background(), Config{Terminal: true}, -1, -1)
		if !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "NewConsole") {
			t.Errorf("New(terminal) = %v", err)
		}
	})
}

func TestConsoleResize(t *testing.T) {
	master, slave := openPty(t, false)
	defer slave.Close()
	c := mustNewConsole(t, Config{}, master)
	for _, ws := range []unix.Winsize{{Col: 132, Row: 43}, {Col: 1, Row: 1}, {Col: 65535, Row: 65535}} {
		if err := c.Resize(uint32(ws.Col), uint32(ws.Row)); err != nil {
			t.Fatalf("Resize(%d, %d): %v", ws.Col, ws.Row, err)
		}
		// The slave sees what was set on the master.
		got, err := unix.IoctlGetWinsize(int(slave.Fd()), unix.TIOCGWINSZ)
		if err != nil {
			t.Fatal(err)
		}
		if got.Col != ws.Col || got.Row != ws.Row {
			t.Errorf("slave size %dx%d, want %dx%d", got.Col, got.Row, ws.Col, ws.Row)
		}
	}
	if err := c.Resize(1<<16, 24); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Resize(65536, 24) = %v, want invalid argument", err)
	}
	closeTwice(t, c)
	if err := c.Resize(80, 24); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("Resize after Close = %v, want failed precondition", err)
	}
	if err := c.CloseStdin(); err != nil {
		t.Errorf("CloseStdin after Close = %v", err)
	}
}

func TestConsoleCloseReleasesEverything(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, dir string)
	}{
		{name: "full run", run: func(t *testing.T, dir string) {
			cfg := Config{Stdin: mkfifo(t, dir, "in"), Stdout: mkfifo(t, dir, "out")}
			outC := readFifo(cfg.Stdout)
			master, slave := openPty(t, false)
			c := mustNewConsole(t, cfg, master)
			child := spawnTTY(t, slave, "head -n 1")
			in := openStdin(t, cfg.Stdin)
			in.WriteString("line\n")
			in.Close()
			c.CloseStdin()
			child.wait(t)
			waitIO(t, c)
			recvRead(t, "stdout", outC)
			closeTwice(t, c)
		}},
		{name: "close before the process ran", run: func(t *testing.T, dir string) {
			master, slave := openPty(t, false)
			c := mustNewConsole(t, Config{Stdin: mkfifo(t, dir, "in"), Stdout: mkfifo(t, dir, "out")}, master)
			closeTwice(t, c)
			slave.Close()
		}},
		{name: "close while output waits for a reader that never came", run: func(t *testing.T, dir string) {
			master, slave := openPty(t, false)
			c := mustNewConsole(t, Config{Stdout: mkfifo(t, dir, "out")}, master)
			child := spawnTTY(t, slave, "head -c 300000 /dev/zero")
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			if err := c.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Wait = %v, want deadline exceeded", err)
			}
			closeTwice(t, c)
			child.kill()
		}},
		{name: "close while stdin is blocked on a full terminal", run: func(t *testing.T, dir string) {
			cfg := Config{Stdin: mkfifo(t, dir, "in"), Stdout: mkfifo(t, dir, "out")}
			outC := readFifo(cfg.Stdout)
			master, slave := openPty(t, false)
			c := mustNewConsole(t, cfg, master)
			// Non-canonical without echo: input piles up in the terminal
			// until its buffer is full and writes to the master block (in
			// canonical mode the terminal would drop what overflows a line).
			setTermios(t, slave, func(tt *unix.Termios) { tt.Lflag &^= unix.ICANON | unix.ECHO })
			child := spawnTTY(t, slave, "sleep 10")
			in := openStdin(t, cfg.Stdin)
			defer in.Close()
			in.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
			chunk := make([]byte, 4096)
			for {
				if _, err := in.Write(chunk); err != nil {
					break // the fifo is full too: the copy is stuck
				}
			}
			closeTwice(t, c)
			child.kill()
			recvRead(t, "stdout", outC)
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

func TestConsoleAfterProcessExited(t *testing.T) {
	// A short process may be gone before the shim starts copying: what it
	// wrote still waits in the terminal, and the end is seen at once.
	dir := t.TempDir()
	out := mkfifo(t, dir, "out")
	outC := readFifo(out)
	master, slave := openPty(t, false)
	child := spawnTTY(t, slave, "echo early")
	child.wait(t)
	c := mustNewConsole(t, Config{Stdout: out}, master)
	waitIO(t, c)
	if got := recvRead(t, "stdout", outC); got != "early\r\n" {
		t.Errorf("stdout %q, want %q", got, "early\r\n")
	}
	closeTwice(t, c)
}
