package shim

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRecoverPanics(t *testing.T) {
	intercept := recoverPanics(slog.New(slog.NewTextHandler(io.Discard, nil)))
	info := &ttrpc.UnaryServerInfo{FullMethod: "/containerd.task.v3.Task/Create"}
	_, err := intercept(context.Background(), nil, info, func(context.Context, func(any) error) (any, error) {
		var m map[string]int
		m["boom"]++ // nil map: panics
		return nil, nil
	})
	if status.Code(err) != codes.Internal {
		t.Fatalf("panic became %v; want an Internal error", err)
	}
	resp, err := intercept(context.Background(), nil, info, func(context.Context, func(any) error) (any, error) {
		return "ok", nil
	})
	if err != nil || resp != "ok" {
		t.Fatalf("plain call: %v, %v", resp, err)
	}
}
