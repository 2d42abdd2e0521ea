package runtimeopts

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func TestRuncOptions(t *testing.T) {
	anyOf := func(m proto.Message) *anypb.Any {
		a, err := anypb.New(m)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	tests := []struct {
		name    string
		opts    *anypb.Any
		want    bool
		invalid bool
	}{
		{"none", nil, false, false},
		{"runc options, cgroupfs", anyOf(&runcoptions.Options{BinaryName: "runc"}), false, false},
		{"runc options, systemd", anyOf(&runcoptions.Options{SystemdCgroup: true, NoNewKeyring: true}), true, false},
		{"empty", &anypb.Any{}, false, false},
		{"another type is refused", anyOf(&runcoptions.ProcessDetails{ExecID: "x"}), false, true},
		{"corrupt", &anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: []byte{0xff}}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.opts)
			if tt.invalid {
				if !errdefs.IsInvalidArgument(err) {
					t.Fatalf("got %v, %v; want invalid argument", got, err)
				}
				return
			}
			if err != nil || got.SystemdCgroup != tt.want || got.NoNewKeyring != tt.want {
				t.Fatalf("got %v, %v; want SystemdCgroup and NoNewKeyring %v", got, err, tt.want)
			}
		})
	}
}

// CRI's generic options: the runtime's options table as TOML, inline or in
// a file, with runc's options' names; an unknown key is refused.
// A sandbox's task API is not implemented: refused, never skipped.
func TestTaskAPIOptionsRefused(t *testing.T) {
	for _, o := range []*runcoptions.Options{
		{TaskApiAddress: "unix:///run/sandbox.sock"},
		{TaskApiVersion: 3},
	} {
		a, err := anypb.New(o)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(a); !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "TaskApiAddress") {
			t.Errorf("Decode(%v) = %v; want NotImplemented naming TaskApiAddress", o, err)
		}
	}
}

func TestGenericRuntimeOptions(t *testing.T) {
	file := filepath.Join(t.TempDir(), "opts.toml")
	if err := os.WriteFile(file, []byte("NoNewKeyring = true\nShimCgroup = \"/x\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	anyOf := func(o *runtimeoptions.Options) *anypb.Any {
		a, err := anypb.New(o)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	tests := []struct {
		name  string
		opts  *runtimeoptions.Options
		check func(*Options) bool
		class func(error) bool
		want  string
	}{
		{name: "body", opts: &runtimeoptions.Options{ConfigBody: []byte("SystemdCgroup = true\nIoUid = 7\nBinaryName = \"runc\"\n")},
			check: func(o *Options) bool { return o.SystemdCgroup && o.IoUid == 7 && !o.NoNewKeyring }},
		{name: "empty body", opts: &runtimeoptions.Options{}, check: func(o *Options) bool { return !o.SystemdCgroup }},
		{name: "path wins", opts: &runtimeoptions.Options{ConfigPath: file, ConfigBody: []byte("SystemdCgroup = true\n")},
			check: func(o *Options) bool { return o.NoNewKeyring && o.ShimCgroup == "/x" && !o.SystemdCgroup }},
		{name: "shim group", opts: &runtimeoptions.Options{ConfigBody: []byte("ShimGroup = \"node\"\n")},
			check: func(o *Options) bool { return o.ShimGroup == "node" && !o.SystemdCgroup }},
		{name: "bad shim group", opts: &runtimeoptions.Options{ConfigBody: []byte("ShimGroup = \"cluster\"\n")}, class: errdefs.IsInvalidArgument, want: "ShimGroup \"cluster\""},
		{name: "unknown key", opts: &runtimeoptions.Options{ConfigBody: []byte("NoNewKeyring = true\nBogus = 1\n")}, class: errdefs.IsInvalidArgument, want: "Bogus"},
		{name: "wrong type", opts: &runtimeoptions.Options{ConfigBody: []byte("IoUid = \"x\"\n")}, class: errdefs.IsInvalidArgument, want: "options table"},
		{name: "missing file", opts: &runtimeoptions.Options{ConfigPath: file + ".nope"}, class: errdefs.IsNotFound, want: ".nope"},
		// Refused at once: a fifo with no writer must not hang the open.
		{name: "fifo", opts: &runtimeoptions.Options{ConfigPath: fifo}, class: errdefs.IsInvalidArgument, want: "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(anyOf(tt.opts))
			if tt.class != nil {
				if err == nil || !tt.class(err) || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("got %v, %v; want an error naming %q", got, err, tt.want)
				}
				return
			}
			if err != nil || !tt.check(got) {
				t.Fatalf("got %+v, %v", got, err)
			}
		})
	}
}
