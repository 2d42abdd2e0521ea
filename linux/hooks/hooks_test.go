package hooks

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hook")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRun(t *testing.T) {
	state := &specs.State{Version: specs.Version, ID: "c1", Status: specs.StateCreating, Pid: 42, Bundle: "/b"}
	out := filepath.Join(t.TempDir(), "out")
	tests := []struct {
		name    string
		hooks   []specs.Hook
		opts    Options
		wantErr string
		check   func(t *testing.T)
	}{
		{
			name: "state on stdin, args, env, dir",
			hooks: []specs.Hook{{
				Path: script(t, `cat > `+out+`; echo "$0 $1 $2 $FOO $(pwd)" >> `+out),
				Args: []string{"argzero", "a1", "a2"},
				Env:  []string{"FOO=bar"},
			}},
			opts: Options{Dir: "/tmp"},
			check: func(t *testing.T) {
				b, _ := os.ReadFile(out)
				lines := strings.SplitN(string(b), "\n", 2)
				if !strings.HasPrefix(lines[0], "{") || !strings.Contains(lines[0]+lines[1], `"id":"c1"`) {
					t.Errorf("hook got %q", b)
				}
				var got specs.State
				if err := json.Unmarshal([]byte(strings.SplitN(string(b), "}", 2)[0]+"}"), &got); err != nil || got.Pid != 42 || got.Status != specs.StateCreating {
					t.Errorf("hook's stdin %q is not the state (%v)", b, err)
				}
				if !strings.Contains(string(b), " a1 a2 bar /tmp") {
					t.Errorf("args, env or dir not as given: %q", b)
				}
			},
		},
		{
			name:  "default env when the hook has none",
			hooks: []specs.Hook{{Path: script(t, `echo "$FOO" > `+out)}},
			opts:  Options{Env: []string{"FOO=fromdefault"}},
			check: func(t *testing.T) {
				if b, _ := os.ReadFile(out); string(b) != "fromdefault\n" {
					t.Errorf("got %q", b)
				}
			},
		},
		{
			name:    "failure quotes output and stops",
			hooks:   []specs.Hook{{Path: script(t, "echo to-out; echo to-err >&2; exit 3")}, {Path: script(t, "touch "+out+".never")}},
			wantErr: `hooks.prestart[0] `,
			check: func(t *testing.T) {
				if _, err := os.Stat(out + ".never"); err == nil {
					t.Error("a hook after the failing one ran")
				}
			},
		},
		{
			name:    "timeout",
			hooks:   []specs.Hook{{Path: script(t, "exec sleep 30"), Timeout: ptr(1)}},
			wantErr: "ran past its timeout of 1s",
		},
		{
			// What the hook started dies with it: the group is killed.
			name:    "timeout kills the hook's children",
			hooks:   []specs.Hook{{Path: script(t, "sleep 30 & echo $! > "+out+"; wait"), Timeout: ptr(1)}},
			wantErr: "ran past its timeout of 1s",
			check: func(t *testing.T) {
				b, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				pid := strings.TrimSpace(string(b))
				deadline := time.Now().Add(5 * time.Second)
				for {
					stat, err := os.ReadFile("/proc/" + pid + "/stat")
					if err != nil || strings.Contains(string(stat), ") Z ") {
						return // gone, or dead and waiting to be reaped
					}
					if time.Now().After(deadline) {
						t.Fatalf("the hook's child %s still runs: %s", pid, stat)
					}
					time.Sleep(20 * time.Millisecond)
				}
			},
		},
		{
			name:  "daemon holding the output does not hang us",
			hooks: []specs.Hook{{Path: script(t, "sleep 3 & exit 0")}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(out)
			tt.opts.Start = Direct
			start := time.Now()
			err := Run(context.Background(), "prestart", tt.hooks, state, tt.opts)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Run: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Run = %v; want %q", err, tt.wantErr)
			}
			if tt.name == "failure quotes output and stops" && !strings.Contains(err.Error(), `exit status 3, stdout: "to-out", stderr: "to-err"`) {
				t.Errorf("error does not quote the output: %v", err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v", d)
			}
			if tt.check != nil {
				tt.check(t)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestValidate(t *testing.T) {
	if err := Validate(&specs.Hooks{Prestart: []specs.Hook{{Path: "/bin/true"}}}); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*specs.Hooks{
		{CreateRuntime: []specs.Hook{{Path: "true"}}},
		{Poststop: []specs.Hook{{Path: "/bin/true", Timeout: ptr(0)}}},
	} {
		if err := Validate(h); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Validate(%+v) = %v; want InvalidArgument", h, err)
		}
	}
}
