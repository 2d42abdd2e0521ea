package io

import (
	"fmt"
	"net/url"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
)

// kind is what one stdio string of a task request names.
type kind int

const (
	kindNone   kind = iota // "": the child gets /dev/null
	kindPath               // a plain absolute path, normally a fifo the client made
	kindFile               // file:///abs: the shim appends to that file
	kindBinary             // binary:///abs?k=v: a logging program reads the streams
)

// target is one parsed stdio string.
type target struct {
	kind kind
	path string
	// args are the logging program's arguments (kindBinary only).
	args []string
	// strictReady: the logger must write a byte before it closes its ready
	// fd, so that a logger that crashed early is not taken for ready
	// (binary-v2).
	strictReady bool
}

// parseURI classifies a stdio string of a task request. Errors wrap
// errdefs.ErrInvalidArgument.
func parseURI(s string) (target, error) {
	if s == "" {
		return target{kind: kindNone}, nil
	}
	// containerd passes fifo paths verbatim; they are not URIs and may hold
	// characters (%, ?) that a URI parser would mangle.
	if strings.HasPrefix(s, "/") {
		return target{kind: kindPath, path: s}, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return target{}, fmt.Errorf("stdio URI %q: %w: %v", s, errdefs.ErrInvalidArgument, err)
	}
	var t target
	switch u.Scheme {
	case "file":
		t.kind = kindFile
	case "binary", "binary-v2":
		t.kind = kindBinary
		t.strictReady = u.Scheme == "binary-v2"
	case "":
		return target{}, fmt.Errorf("stdio path %q is not absolute: %w", s, errdefs.ErrInvalidArgument)
	default:
		return target{}, fmt.Errorf("stdio URI %q: unsupported scheme %q: %w", s, u.Scheme, errdefs.ErrInvalidArgument)
	}
	if u.Host != "" && u.Host != "localhost" {
		return target{}, fmt.Errorf("stdio URI %q: remote host %q: %w", s, u.Host, errdefs.ErrInvalidArgument)
	}
	if u.Opaque != "" || !filepath.IsAbs(u.Path) {
		return target{}, fmt.Errorf("stdio URI %q: path is not absolute: %w", s, errdefs.ErrInvalidArgument)
	}
	t.path = filepath.Clean(u.Path)
	if t.kind == kindBinary {
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			return target{}, fmt.Errorf("stdio URI %q: query: %w: %v", s, errdefs.ErrInvalidArgument, err)
		}
		t.args = loggerArgs(q)
	}
	return t, nil
}

// loggerArgs turns the query into "key value" argument pairs the way
// containerd's shims do (first value of each key), but in key order so
// that a logger sees the same command line every time.
func loggerArgs(q url.Values) []string {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := make([]string, 0, 2*len(keys))
	for _, k := range keys {
		args = append(args, k, q[k][0])
	}
	return args
}
