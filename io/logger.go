package io

import (
	"context"
	"errors"
	"fmt"
	goio "io"
	"os"
	"os/exec"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// loggerGrace is how long a logging binary may take to flush and exit after
// SIGTERM before it is killed.
const loggerGrace = 10 * time.Second

// StartFunc starts a helper process of the shim and returns a channel that
// is closed or receives a value once that process exited. The caller of
// the StartFunc never waits for the process itself.
type StartFunc func(cmd *exec.Cmd) (exited <-chan struct{}, err error)

// logger is a running logging binary (binary:// and binary-v2:// URIs).
type logger struct {
	path    string
	cmd     *exec.Cmd
	exited  <-chan struct{}
	release bool // cmd was started by a StartFunc: release its handle after exit
	grace   time.Duration
}

// startLogger starts the logging binary of t the way containerd's shims do:
// fd 3 reads the child's stdout, fd 4 its stderr, and fd 5 is a pipe the
// logger closes (binary-v2: after writing a byte) once it is ready.
// CONTAINER_ID and CONTAINER_NAMESPACE are its whole environment. It
// returns the write ends the child gets as stdout and stderr.
func startLogger(ctx context.Context, t target, cfg Config) (_ *logger, _, _ *os.File, retErr error) {
	if cfg.Namespace == "" {
		return nil, nil, nil, fmt.Errorf("logging binary %s: namespace is required: %w", t.path, errdefs.ErrInvalidArgument)
	}
	// temp: what the logger gets as its own, the shim never keeps;
	// child: the child's ends, returned on success.
	var temp, child []*os.File
	defer func() {
		if retErr != nil {
			temp = append(temp, child...)
		}
		for _, f := range temp {
			f.Close()
		}
	}()
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("logging binary %s: stdout pipe: %w", t.path, err)
	}
	temp, child = append(temp, outR), append(child, outW)
	errR, errW, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("logging binary %s: stderr pipe: %w", t.path, err)
	}
	temp, child = append(temp, errR), append(child, errW)
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("logging binary %s: ready pipe: %w", t.path, err)
	}
	temp = append(temp, readyR, readyW)

	cmd := exec.Command(t.path, t.args...)
	cmd.Env = []string{"CONTAINER_ID=" + cfg.ContainerID, "CONTAINER_NAMESPACE=" + cfg.Namespace}
	cmd.ExtraFiles = []*os.File{outR, errR, readyW}
	l := &logger{path: t.path, cmd: cmd, grace: loggerGrace}
	if cfg.StartLogger != nil {
		l.exited, err = cfg.StartLogger(cmd)
		l.release = true
	} else {
		l.exited, err = startAndWait(cmd)
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("start logging binary %s: %w", t.path, classify(err))
	}
	// Only the logger may hold these now: its ready fd must reach EOF when
	// the logger closes it, and its input pipes when the child is done.
	outR.Close()
	errR.Close()
	readyW.Close()
	if err := l.awaitReady(ctx, readyR, t.strictReady); err != nil {
		l.kill()
		return nil, nil, nil, err
	}
	return l, outW, errW, nil
}

// startAndWait is the StartFunc for processes without a reaper of their own.
func startAndWait(cmd *exec.Cmd) (<-chan struct{}, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		// The exit status of a logger says nothing about the container.
		_ = cmd.Wait()
	}()
	return exited, nil
}

func (l *logger) awaitReady(ctx context.Context, ready *os.File, strict bool) error {
	stop := context.AfterFunc(ctx, func() {
		// Makes the pending Read below return; a pipe from os.Pipe is
		// pollable, so deadlines work on it.
		ready.SetReadDeadline(time.Now())
	})
	defer stop()
	var b [1]byte
	n, err := ready.Read(b[:])
	switch {
	case err != nil && !errors.Is(err, goio.EOF):
		if ctx.Err() != nil {
			return fmt.Errorf("wait for logging binary %s to be ready: %w", l.path, ctx.Err())
		}
		return fmt.Errorf("wait for logging binary %s to be ready: %w", l.path, err)
	case strict && n == 0:
		return fmt.Errorf("logging binary %s closed its ready fd without signalling ready (did it crash?): %w",
			l.path, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// kill ends a logger that failed to get ready.
func (l *logger) kill() {
	l.cmd.Process.Kill()
	<-l.exited
	l.releaseProcess()
}

// stop asks the logger to flush and exit, and kills it if it does not in
// time. A logger normally exits by itself once the child's pipes reach EOF.
func (l *logger) stop() error {
	defer l.releaseProcess()
	select {
	case <-l.exited:
		return nil
	default:
	}
	if err := l.cmd.Process.Signal(unix.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		// Kill fails the same way; waiting for an exit could then hang.
		return fmt.Errorf("stop logging binary %s: %w", l.path, err)
	}
	timer := time.NewTimer(l.grace)
	defer timer.Stop()
	select {
	case <-l.exited:
		return nil
	case <-timer.C:
	}
	if err := l.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill logging binary %s: %w", l.path, err)
	}
	<-l.exited
	return nil
}

// releaseProcess frees the process handle (a pidfd) that os/exec keeps
// until Wait, which a StartFunc caller never calls.
func (l *logger) releaseProcess() {
	if l.release {
		l.cmd.Process.Release()
	}
}
