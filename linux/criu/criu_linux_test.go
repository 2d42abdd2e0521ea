package criu

import (
	"context"
	"errors"
	"os/exec"
	"strings"
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

func TestCheckVersion(t *testing.T) {
	cases := []struct {
		v    int
		want error
	}{
		{31701, nil},
		{31400, nil},
		{31300, errdefs.ErrFailedPrecondition},
		{30000, errdefs.ErrFailedPrecondition},
	}
	for _, tc := range cases {
		err := checkVersion("/usr/sbin/criu", tc.v)
		if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("checkVersion(%d) = %v, want %v", tc.v, err, tc.want)
		}
		if err != nil && !strings.Contains(err.Error(), "need CRIU 3.14.0 or later") {
			t.Errorf("checkVersion(%d): %v does not name the version needed", tc.v, err)
		}
	}
}
