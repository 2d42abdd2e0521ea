package steptime

import (
	"context"
	"regexp"
	"testing"
)

func TestRecorder(t *testing.T) {
	tests := []struct {
		name  string
		marks []string
		want  string
	}{
		{name: "none", want: `^total=\d+\.\d\d$`},
		{name: "two", marks: []string{"spec", "spawn"}, want: `^spec=\d+\.\d\d spawn=\d+\.\d\d total=\d+\.\d\d$`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, r := With(context.Background())
			for _, m := range tt.marks {
				Mark(ctx, m)
			}
			if r.Len() != len(tt.marks) {
				t.Errorf("Len = %d, want %d", r.Len(), len(tt.marks))
			}
			if got := r.String(); !regexp.MustCompile(tt.want).MatchString(got) {
				t.Errorf("String = %q, want a match of %s", got, tt.want)
			}
		})
	}
}

// Without a Recorder, Mark is a no-op.
func TestMarkWithoutRecorder(t *testing.T) {
	Mark(context.Background(), "x")
}

// Another process's steps come after ours, prefixed, and only where a
// Recorder is.
func TestDetail(t *testing.T) {
	Detail(context.Background(), "init", "config=0.10")
	if Active(context.Background()) {
		t.Error("Active without a Recorder")
	}
	ctx, r := With(context.Background())
	if !Active(ctx) {
		t.Error("not Active with a Recorder")
	}
	Mark(ctx, "spawn")
	Detail(ctx, "init", "config=0.10 rootfs=0.52 total=0.90")
	want := regexp.MustCompile(`^spawn=\d+\.\d\d total=\d+\.\d\d init\.config=0\.10 init\.rootfs=0\.52 init\.total=0\.90$`)
	if got := r.String(); !want.MatchString(got) {
		t.Errorf("String = %q", got)
	}
}
