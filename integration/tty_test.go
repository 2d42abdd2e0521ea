package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Case 15: terminals, with ctr on a real pty of the test's making (20 rows,
// 90 columns) as a user's terminal would be: ctr -t puts it in raw mode,
// so keys reach the container's pty unchanged and its line discipline
// echoes input and turns ^C into SIGINT.
func TestTerminal(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		t.Run("run", func(t *testing.T) {
			tc := newCase(t, tg, "ttyrun")
			// The sleep keeps this off ctr's race between copying the
			// output and closing it at delete (see TestConcurrent).
			p := tc.startPty(tc.runArgs([]string{"--rm", "--tty"}, "", "/bin/sh", "-c", "tty; sleep 0.2; exit 4")...)
			res := p.wait(30 * time.Second)
			if res.ExitCode != 4 || !strings.Contains(res.Stdout, "/dev/pts/0\n") {
				t.Fatalf("want /dev/pts/0 and exit code 4:\n%s", res)
			}
			tc.lifecycle(4)
		})
		t.Run("exec", func(t *testing.T) {
			tc := newCase(t, tg, "ttyexec")
			tc.startDetached("/bin/sleep", "1000")
			t.Run("size", func(t *testing.T) { tc.sub(t).ttySize() })
			t.Run("ctrl-c", func(t *testing.T) { tc.sub(t).ttyInterrupt() })
		})
	})
}

// ttySize: the exec's pty gets ctr's size, and follows a resize. ctr sets
// the size only after Start (with runc-v2 too), so the shell polls for
// the size it expects, 5s at most, before it prints it.
func (tc *tcase) ttySize() {
	t := tc.t
	waitSize := func(size string) string {
		return `i=0; while [ "$(stty size)" != "` + size + `" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; stty size`
	}
	script := waitSize("20 90") + "; read line; " + waitSize("30 100")
	p := tc.startPty(tc.execArgs([]string{"--tty"}, "tsize", "/bin/sh", "-c", script)...)
	if !p.waitOutput("20 90\n", 1, 10*time.Second) {
		t.Fatalf("want \"20 90\" from stty size, got %q", p.output())
	}
	// TIOCSWINSZ on the master sends ctr SIGWINCH; ctr then resizes the
	// exec's pty.
	if err := setPtySize(p.master, 30, 100); err != nil {
		t.Fatal(err)
	}
	p.send("\r")
	if !p.waitOutput("30 100\n", 1, 10*time.Second) {
		t.Errorf("after a resize to 30x100, stty size says %q", p.output())
	}
	if res := p.wait(10 * time.Second); res.ExitCode != 0 {
		t.Errorf("want exit code 0:\n%s", res)
	}
}

// ttyInterrupt: ^C ends the shell's foreground sleep, the shell survives,
// typed input is echoed and the shell's exit code comes back.
func (tc *tcase) ttyInterrupt() {
	t := tc.t
	const prompt = "/ # " // busybox ash as root
	p := tc.startPty(tc.execArgs([]string{"--tty"}, "tint", "/bin/sh")...)
	if !p.waitOutput(prompt, 1, 10*time.Second) {
		t.Fatalf("no shell prompt: %q", p.output())
	}
	// ctr sizes the pty after Start; the SIGWINCH makes ash redraw the
	// line being typed, which would garble its echo. So wait for the size
	// first; $((6*7)) tells the output from the echoed command.
	p.send(`while [ "$(stty size)" != "20 90" ]; do sleep 0.05; done; echo sized-$((6*7))` + "\r")
	sized := func(out string) bool {
		_, rest, ok := strings.Cut(out, "sized-42\n")
		return ok && strings.Contains(rest, prompt)
	}
	if !p.waitFor(sized, 10*time.Second) {
		t.Fatalf("the exec's pty never got 20x90: %q", p.output())
	}
	const line = "sleep 100; echo rc=$?"
	p.send(line + "\r")
	if !p.waitOutput(line+"\n", 1, 5*time.Second) {
		t.Fatalf("typed input not echoed: %q", p.output())
	}
	tc.waitForegroundSleep()
	p.send("\x03")
	// A prompt after the echoed line: ash redraws its prompt at times, so
	// counting prompts would not do.
	afterLine := func(out string) bool {
		_, rest, ok := strings.Cut(out, line+"\n")
		return ok && strings.Contains(rest, prompt)
	}
	if !p.waitFor(afterLine, 5*time.Second) {
		t.Fatalf("no prompt after ^C: %q", p.output())
	}
	p.send("echo alive; exit 9\r")
	res := p.wait(10 * time.Second)
	if res.ExitCode != 9 || !strings.Contains(res.Stdout, "\nalive\n") {
		t.Fatalf("want \"alive\" and exit code 9 from the shell that survived ^C:\n%s", res)
	}
}

// waitForegroundSleep waits until a process of the container runs sleep
// (so it has exec'd, after its shell made it the terminal's foreground
// process group) and is that group: only then does ^C reach it.
func (tc *tcase) waitForegroundSleep() {
	tc.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, row := range parsePs(tc.ctr("", "tasks", "ps", tc.id).Stdout) {
			cmdline, _ := os.ReadFile("/proc/" + row.Pid + "/cmdline")
			stat, _ := os.ReadFile("/proc/" + row.Pid + "/stat")
			if string(cmdline) != "sleep\x00100\x00" {
				continue
			}
			// After "(comm)": state ppid pgrp session tty_nr tpgid.
			_, rest, _ := strings.Cut(string(stat), ") ")
			if f := strings.Fields(rest); len(f) > 5 && f[2] == f[5] {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	tc.t.Fatalf("no sleep in the foreground of the exec's terminal")
}

// ptyProc is a command whose stdin, stdout and stderr are the slave of a
// pty the test holds the master of; the pty is its controlling terminal.
type ptyProc struct {
	t      *testing.T
	master *os.File
	cmd    *exec.Cmd
	start  time.Time

	mu   sync.Mutex
	out  bytes.Buffer
	wake chan struct{} // closed and replaced on new output and at EOF
	eof  bool

	exited chan struct{}
	err    error // Wait's result, valid after exited is closed
}

// startPty starts ctr with args on a new 20x90 pty. The cleanup kills its
// session, in case the test failed before it ended.
func (tc *tcase) startPty(args ...string) *ptyProc {
	t := tc.t
	t.Helper()
	master, slavePath, err := newPty()
	if err != nil {
		t.Fatal(err)
	}
	if err := setPtySize(master, 20, 90); err != nil {
		master.Close()
		t.Fatalf("size pty: %v", err)
	}
	slave, err := os.OpenFile(slavePath, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		t.Fatalf("open %s: %v", slavePath, err)
	}
	full := tc.c.CtrArgs(args...)
	cmd := exec.Command(tc.c.Version.CtrPath(), full...)
	cmd.Env = append(os.Environ(), quietCtr, "TERM=xterm")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0, Pdeathsig: syscall.SIGKILL}
	p := &ptyProc{t: t, master: master, cmd: cmd, wake: make(chan struct{}), exited: make(chan struct{}), start: time.Now()}
	err = cmd.Start()
	// Only ctr may hold the slave, so that the master reads EOF (EIO)
	// once ctr is gone.
	slave.Close()
	if err != nil {
		master.Close()
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	go p.read()
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-p.exited
		}
		master.Close()
	})
	return p
}

// newPty opens a pty master and returns it with its slave's path.
func newPty() (*os.File, string, error) {
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, "", fmt.Errorf("open /dev/ptmx: %w", err)
	}
	fd := int(master.Fd())
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err == nil {
		err = unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0)
	}
	if err != nil {
		master.Close()
		return nil, "", fmt.Errorf("set up pty: %w", err)
	}
	return master, fmt.Sprintf("/dev/pts/%d", n), nil
}

func setPtySize(master *os.File, rows, cols uint16) error {
	if err := unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		return fmt.Errorf("set pty size %dx%d: %w", rows, cols, err)
	}
	return nil
}

func (p *ptyProc) read() {
	buf := make([]byte, 4096)
	for {
		n, err := p.master.Read(buf)
		p.mu.Lock()
		p.out.Write(buf[:n])
		p.eof = err != nil
		close(p.wake)
		p.wake = make(chan struct{})
		p.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// output is what ctr wrote so far, without carriage returns: the
// container's pty turns \n into \r\n and ctr's own pty, left with output
// processing on, then makes that \r\r\n.
func (p *ptyProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.outputLocked()
}

// outputLocked is output for a caller holding p.mu.
func (p *ptyProc) outputLocked() string { return strings.ReplaceAll(p.out.String(), "\r", "") }

// send types s on the terminal.
func (p *ptyProc) send(s string) {
	p.t.Helper()
	if _, err := p.master.Write([]byte(s)); err != nil {
		p.t.Fatalf("write %q to the pty: %v", s, err)
	}
}

// waitOutput waits until s occurs n times in the output.
func (p *ptyProc) waitOutput(s string, n int, wait time.Duration) bool {
	return p.waitFor(func(out string) bool { return strings.Count(out, s) >= n }, wait)
}

// waitFor waits until done accepts the output; false at EOF or timeout.
func (p *ptyProc) waitFor(done func(string) bool, wait time.Duration) bool {
	timeout := time.After(wait)
	for {
		// The output and the channel that announces more of it, read
		// together: output arriving between the two would otherwise close
		// the channel before we wait on it, and we would wait for the
		// next output instead, which may never come.
		p.mu.Lock()
		out := p.outputLocked()
		eof, wake := p.eof, p.wake
		p.mu.Unlock()
		if done(out) {
			return true
		}
		if eof {
			return false
		}
		select {
		case <-wake:
		case <-timeout:
			return false
		}
	}
}

// wait waits for ctr to exit and for the rest of its output.
func (p *ptyProc) wait(wait time.Duration) Result {
	p.t.Helper()
	res := Result{Args: p.cmd.Args, ExitCode: -1}
	select {
	case <-p.exited:
	case <-time.After(wait):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
		res.Err = context.DeadlineExceeded
	}
	p.waitOutput("\x00never\x00", 1, 2*time.Second) // returns at EOF
	res.Stdout, res.Duration = p.output(), time.Since(p.start)
	var exitErr *exec.ExitError
	switch {
	case res.Err != nil:
	case p.err == nil:
		res.ExitCode = 0
	case errors.As(p.err, &exitErr) && exitErr.Exited():
		res.ExitCode = exitErr.ExitCode()
	default:
		res.Err = p.err
	}
	return res
}
