package linux

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestSpecLoad(t *testing.T) {
	const good = `{"ociVersion":"1.0.2","process":{"args":["/bin/true"],"cwd":"/"},"root":{"path":"rootfs"},
		"linux":{"namespaces":[{"type":"mount"},{"type":"pid"}]}}`
	tests := []struct {
		name    string
		config  *string // nil: no config.json
		class   func(error) bool
		wantErr string
	}{
		{name: "missing", class: errdefs.IsNotFound, wantErr: "config.json"},
		{name: "not json", config: ptr("{nope"), class: errdefs.IsInvalidArgument, wantErr: "not a valid runtime spec"},
		{name: "no process", config: ptr(`{"root":{"path":"r"},"linux":{}}`), class: errdefs.IsInvalidArgument, wantErr: "process is missing"},
		{name: "empty args", config: ptr(strings.Replace(good, `["/bin/true"]`, `[]`, 1)), class: errdefs.IsInvalidArgument, wantErr: "process.args is empty"},
		{name: "relative cwd", config: ptr(strings.Replace(good, `"cwd":"/"`, `"cwd":"x"`, 1)), class: errdefs.IsInvalidArgument, wantErr: "process.cwd"},
		{name: "no mount ns", config: ptr(strings.Replace(good, `{"type":"mount"},`, ``, 1)), class: errdefs.IsInvalidArgument, wantErr: "mount namespace"},
		{name: "user ns", config: ptr(strings.Replace(good, `{"type":"pid"}`, `{"type":"pid"},{"type":"user"}`, 1)), class: errdefs.IsNotImplemented, wantErr: "user namespaces"},
		{name: "unknown ns", config: ptr(strings.Replace(good, `{"type":"pid"}`, `{"type":"bogus"}`, 1)), class: errdefs.IsInvalidArgument, wantErr: "bogus"},
		{name: "missing ns path", config: ptr(strings.Replace(good, `{"type":"pid"}`, `{"type":"network","path":"/proc/0/ns/net"}`, 1)), class: errdefs.IsNotFound, wantErr: "/proc/0/ns/net"},
		{name: "hostname without uts", config: ptr(strings.Replace(good, `"root"`, `"hostname":"h","root"`, 1)), class: errdefs.IsInvalidArgument, wantErr: "UTS"},
		{name: "cgroup escape", config: ptr(strings.Replace(good, `"namespaces"`, `"cgroupsPath":"/a/../../b","namespaces"`, 1)), class: errdefs.IsInvalidArgument, wantErr: "escapes"},
		{name: "good", config: ptr(good)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.config != nil {
				if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(*tt.config), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			spec, err := LoadSpec(dir)
			if tt.class == nil {
				if err != nil {
					t.Fatalf("LoadSpec: %v", err)
				}
				if got := RootfsPath(spec, dir); got != filepath.Join(dir, "rootfs") {
					t.Errorf("RootfsPath = %s", got)
				}
				return
			}
			if err == nil || !tt.class(err) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("LoadSpec error = %v; want class match and %q", err, tt.wantErr)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestSpecBootstrap(t *testing.T) {
	ns := namespaces{unshare: 0x20000, join: []string{"/proc/1/ns/net"}}
	if got, want := string(ns.bootstrap()), "unshare 131072\njoin /proc/1/ns/net\n"; got != want {
		t.Errorf("bootstrap = %q; want %q", got, want)
	}
}

func TestSpecShimGroup(t *testing.T) {
	tests := []struct {
		name   string
		config string // "" means no config.json
		want   string
	}{
		{name: "no config", want: "c1"},
		{name: "no annotations", config: `{"ociVersion":"1.0.2"}`, want: "c1"},
		{name: "sandbox id", config: `{"annotations":{"io.kubernetes.cri.sandbox-id":"pod"}}`, want: "pod"},
		{name: "explicit group wins", config: `{"annotations":{"io.kubernetes.cri.sandbox-id":"pod","io.containerd.runc.v2.group":"g"}}`, want: "g"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.config != "" {
				if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(tt.config), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := ShimGroup(dir, "c1")
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("group = %q, want %q", got, tt.want)
			}
		})
	}
}
