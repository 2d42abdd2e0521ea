package runtimeopts

import (
	"errors"
	"testing"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/types/known/anypb"
)

func TestDecodeCheckpoint(t *testing.T) {
	withExit, err := anypb.New(&runcoptions.CheckpointOptions{Exit: true, FileLocks: true, WorkPath: "/w"})
	if err != nil {
		t.Fatal(err)
	}
	wrongType, err := anypb.New(&runcoptions.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		in      *anypb.Any
		want    *runcoptions.CheckpointOptions
		wantErr error
	}{
		{"none", nil, &runcoptions.CheckpointOptions{}, nil},
		{"empty", &anypb.Any{}, &runcoptions.CheckpointOptions{}, nil},
		{"runc's", withExit, &runcoptions.CheckpointOptions{Exit: true, FileLocks: true, WorkPath: "/w"}, nil},
		{"another type", wrongType, nil, errdefs.ErrInvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeCheckpoint(tc.in)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Exit != tc.want.Exit || got.FileLocks != tc.want.FileLocks || got.WorkPath != tc.want.WorkPath {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
