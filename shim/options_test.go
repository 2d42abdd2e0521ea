package shim

import (
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
)

func TestParseOptions(t *testing.T) {
	env := map[string]string{
		envTTRPCAddress: "/run/containerd/containerd.sock.ttrpc",
		envGRPCAddress:  "/run/containerd/containerd.sock",
	}
	getenv := func(k string) string { return env[k] }
	base := []string{"-namespace", "default", "-address", "/a.sock", "-publish-binary", "/usr/bin/containerd", "-id", "c1"}

	tests := []struct {
		name       string
		args       []string
		wantAction string
		wantErr    error
	}{
		{name: "start", args: append(slices.Clone(base), "start"), wantAction: actionStart},
		{name: "delete", args: append(slices.Clone(base), "-bundle", "/b", "-debug", "delete"), wantAction: actionDelete},
		{name: "serve", args: base, wantAction: actionServe},
		{name: "unknown action", args: append(slices.Clone(base), "frobnicate"), wantErr: errdefs.ErrInvalidArgument},
		{name: "no namespace", args: []string{"-id", "c1", "start"}, wantErr: errdefs.ErrInvalidArgument},
		{name: "no id", args: []string{"-namespace", "default", "start"}, wantErr: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseOptions(tt.args, getenv, io.Discard)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.action != tt.wantAction {
				t.Errorf("action = %q, want %q", o.action, tt.wantAction)
			}
			if o.ttrpcAddress != env[envTTRPCAddress] {
				t.Errorf("ttrpc address = %q", o.ttrpcAddress)
			}
			if o.address != "/a.sock" {
				t.Errorf("address = %q", o.address)
			}
		})
	}
}

func TestDaemonArgsRoundTrip(t *testing.T) {
	o := &options{namespace: "default", id: "c1", bundle: "/b", publishBinary: "/usr/bin/containerd"}
	args := o.daemonArgs("/run/containerd/s/x", "/a.sock", true)
	got, err := parseOptions(args, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got.action != actionServe || got.socket != "/run/containerd/s/x" || got.address != "/a.sock" ||
		got.id != "c1" || got.namespace != "default" || got.bundle != "/b" || !got.debug {
		t.Fatalf("daemon options = %+v", got)
	}
}
