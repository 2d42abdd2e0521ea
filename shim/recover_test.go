package shim

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/minishim/containerd-shim-mini-v2/steptime"
)

func TestRecoverPanics(t *testing.T) {
	intercept := recoverPanics(slog.New(slog.NewTextHandler(io.Discard, nil)), false)
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

// With debug on, a request whose path marks steps gets them logged; one
// that marks none logs nothing.
func TestRequestStepsLogged(t *testing.T) {
	var out strings.Builder
	intercept := recoverPanics(slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})), true)
	info := &ttrpc.UnaryServerInfo{FullMethod: "/containerd.task.v3.Task/Create"}
	for _, marks := range [][]string{nil, {"spec", "spawn"}} {
		out.Reset()
		_, err := intercept(context.Background(), nil, info, func(ctx context.Context, _ func(any) error) (any, error) {
			for _, m := range marks {
				steptime.Mark(ctx, m)
			}
			return nil, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		logged := strings.Contains(out.String(), "request steps")
		if logged != (len(marks) > 0) || (logged && !strings.Contains(out.String(), "spec=")) {
			t.Errorf("marks %v logged %q", marks, out.String())
		}
	}
}
