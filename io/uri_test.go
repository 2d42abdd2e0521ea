package io

import (
	"path/filepath"
	"reflect"
	"testing"

	"github.com/containerd/errdefs"
)

func TestParseURI(t *testing.T) {
	tests := []struct {
		in      string
		want    target
		wantErr bool
	}{
		{in: "", want: target{kind: kindNone}},
		{in: "/run/fifo/stdout", want: target{kind: kindPath, path: "/run/fifo/stdout"}},
		{in: "/odd/%zz?x", want: target{kind: kindPath, path: "/odd/%zz?x"}},
		{in: "file:///var/log/c.log", want: target{kind: kindFile, path: "/var/log/c.log"}},
		{in: "file://localhost/var/log/../c.log", want: target{kind: kindFile, path: "/var/c.log"}},
		{in: "file:/var/log/c.log", want: target{kind: kindFile, path: "/var/log/c.log"}},
		{in: "binary:///usr/bin/logger", want: target{kind: kindBinary, path: "/usr/bin/logger", args: []string{}}},
		{
			in:   "binary:///usr/bin/logger?z=1&a=2&a=3&flag",
			want: target{kind: kindBinary, path: "/usr/bin/logger", args: []string{"a", "2", "flag", "", "z", "1"}},
		},
		{
			in:   "binary-v2:///l?id=x%20y",
			want: target{kind: kindBinary, path: "/l", args: []string{"id", "x y"}, strictReady: true},
		},
		{in: "relative/path", wantErr: true},
		{in: "fifo", wantErr: true},
		{in: "tcp://host:1/x", wantErr: true},
		{in: "fifo:///run/x", wantErr: true},
		{in: "file://remote/var/log", wantErr: true},
		{in: "file://", wantErr: true},
		{in: "file:relative", wantErr: true},
		{in: "binary:logger", wantErr: true},
		{in: "binary:///l?a=%zz", wantErr: true},
		{in: "://x", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseURI(tc.in)
			if tc.wantErr {
				if !errdefs.IsInvalidArgument(err) {
					t.Fatalf("parseURI(%q) = %+v, %v; want an invalid-argument error", tc.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseURI(%q): %v", tc.in, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("parseURI(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"", "/a/b", "file:///x", "file://localhost/x", "binary:///b?k=v&k2=v2",
		"binary-v2:///b?%41=%42", "tcp://h/x", "file:x", "binary://h/x", "a:b:c", "\x00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseURI(s)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("parseURI(%q): error %v is not invalid-argument", s, err)
			}
			return
		}
		again, err := parseURI(s)
		if err != nil || !reflect.DeepEqual(got, again) {
			t.Fatalf("parseURI(%q) is not deterministic: %+v then %+v, %v", s, got, again, err)
		}
		switch got.kind {
		case kindNone:
			if s != "" {
				t.Fatalf("parseURI(%q) = none for a non-empty string", s)
			}
		case kindPath:
			if got.path != s {
				t.Fatalf("parseURI(%q) changed a plain path to %q", s, got.path)
			}
		case kindFile, kindBinary:
			if !filepath.IsAbs(got.path) || filepath.Clean(got.path) != got.path {
				t.Fatalf("parseURI(%q) gave path %q, not absolute and clean", s, got.path)
			}
			if len(got.args)%2 != 0 {
				t.Fatalf("parseURI(%q) gave unpaired args %q", s, got.args)
			}
		default:
			t.Fatalf("parseURI(%q) gave unknown kind %d", s, got.kind)
		}
	})
}
