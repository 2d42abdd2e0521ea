package criu

import (
	"context"
	"errors"
	"os/exec"
	"testing"

	"github.com/containerd/errdefs"
)

func TestMissingCRIU(t *testing.T) {
	c := Client{Path: "/nonexistent/criu", Start: func(cmd *exec.Cmd) (<-chan int, error) {
		t.Fatal("nothing may start without criu")
		return nil, nil
	}}
	err := c.CheckVersion(context.Background())
	if !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("error %v, want FailedPrecondition", err)
	}
}

func TestVersionString(t *testing.T) {
	for v, want := range map[int]string{31701: "3.17.1", 31400: "3.14.0", 40000: "4.0.0"} {
		if got := VersionString(v); got != want {
			t.Errorf("VersionString(%d) = %q, want %q", v, got, want)
		}
	}
}
