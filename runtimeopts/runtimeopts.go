// Package runtimeopts decodes the runtime options containerd sends a shim,
// in either form it uses for this runtime (runc's type, or CRI's generic
// one carrying TOML), into runc's options type.
package runtimeopts

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"syscall"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/errdefs"
	"github.com/pelletier/go-toml/v2"
	"google.golang.org/protobuf/types/known/anypb"
)

// Options are the runtime options this runtime reads: runc's, and how
// containers share a shim, which only the generic options' TOML carries.
type Options struct {
	*runcoptions.Options
	// ShimGroup is "" or one of ShimGroupModes.
	ShimGroup string
}

// ShimGroupModes are the values the ShimGroup option (and the
// io.containerd.mini.v2.shim-group annotation) take: one shim per pod
// (runc-v2's grouping, the default), per containerd namespace, or per
// node (every namespace of one containerd).
var ShimGroupModes = []string{"pod", "namespace", "node"}

// Decode reads the runtime options containerd sent, in either form it
// uses for this runtime:
//
//   - runc's own type (containerd.runc.v1.Options): what a client's
//     WithRuntime options carry, and CRI's for runc's runtime_type;
//   - CRI's generic type (runtimeoptions.v1.Options): what CRI sends for
//     any other runtime_type, the runtime's `options` table as TOML in
//     ConfigBody, or a TOML file at ConfigPath. Its keys are runc's
//     options' names (SystemdCgroup, NoNewKeyring, ...) and ShimGroup; one
//     that is not is refused, never skipped.
//
// Options of any other type are refused (InvalidArgument, naming the
// type), never skipped. Of the options, SystemdCgroup, NoPivotRoot,
// NoNewKeyring, ShimCgroup, IoUid and IoGid change what the runtime does;
// BinaryName and Root name runc's binary and state and mean nothing here;
// CriuImagePath and CriuWorkPath are a restore's directories (README,
// "Options shared with runc-v2"); TaskApiAddress and TaskApiVersion (a
// sandbox's task API) are refused with Unimplemented when set.
func Decode(opts *anypb.Any) (*Options, error) {
	var runc runcoptions.Options
	var generic runtimeoptions.Options
	switch {
	case opts == nil || (opts.GetTypeUrl() == "" && len(opts.GetValue()) == 0):
		return &Options{Options: &runc}, nil
	case opts.MessageIs(&runc):
		if err := opts.UnmarshalTo(&runc); err != nil {
			return nil, fmt.Errorf("runtime options %s: %v: %w", opts.GetTypeUrl(), err, errdefs.ErrInvalidArgument)
		}
		if err := checkUnsupported(&runc); err != nil {
			return nil, err
		}
		return &Options{Options: &runc}, nil
	case opts.MessageIs(&generic):
		if err := opts.UnmarshalTo(&generic); err != nil {
			return nil, fmt.Errorf("runtime options %s: %v: %w", opts.GetTypeUrl(), err, errdefs.ErrInvalidArgument)
		}
		return genericOptions(&generic)
	}
	return nil, fmt.Errorf("runtime options of type %q: neither runc's (containerd.runc.v1.Options) nor CRI's generic ones (runtimeoptions.v1.Options): %w",
		opts.GetTypeUrl(), errdefs.ErrInvalidArgument)
}

// Recognized says whether a is runtime options Decode reads; containerd
// 2.3+ passes `start` extensions of other kinds beside them.
func Recognized(a *anypb.Any) bool {
	return a.MessageIs(&runcoptions.Options{}) || a.MessageIs(&runtimeoptions.Options{})
}

// checkUnsupported refuses the options this runtime does not implement.
func checkUnsupported(o *runcoptions.Options) error {
	if o.GetTaskApiAddress() != "" || o.GetTaskApiVersion() != 0 {
		return fmt.Errorf("runtime options TaskApiAddress/TaskApiVersion (%q, %d): a sandbox's task API is not implemented by this runtime: %w",
			o.GetTaskApiAddress(), o.GetTaskApiVersion(), errdefs.ErrNotImplemented)
	}
	return nil
}

// tomlOptions are the keys the generic options take: runc's options'
// names, as containerd's config writes them for runc, and ShimGroup.
type tomlOptions struct {
	ShimGroup     string
	SystemdCgroup bool
	NoPivotRoot   bool
	NoNewKeyring  bool
	ShimCgroup    string
	IoUid         uint32
	IoGid         uint32
	BinaryName    string
	Root          string
	CriuImagePath string
	CriuWorkPath  string
}

// genericOptions decodes CRI's generic options.
func genericOptions(g *runtimeoptions.Options) (*Options, error) {
	body, where := g.GetConfigBody(), "the runtime's options table (ConfigBody)"
	if p := g.GetConfigPath(); p != "" {
		data, err := readOptionsFile(p)
		if err != nil {
			return nil, err
		}
		body, where = data, "runtime options file "+p
	}
	var t tomlOptions
	dec := toml.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		var strict *toml.StrictMissingError
		if errors.As(err, &strict) {
			return nil, fmt.Errorf("%s: not an option of this runtime: %s: %w", where, strict.String(), errdefs.ErrInvalidArgument)
		}
		return nil, fmt.Errorf("%s: %v: %w", where, err, errdefs.ErrInvalidArgument)
	}
	if err := CheckShimGroup(where+": ShimGroup", t.ShimGroup); err != nil {
		return nil, err
	}
	return &Options{Options: &runcoptions.Options{
		SystemdCgroup: t.SystemdCgroup, NoPivotRoot: t.NoPivotRoot, NoNewKeyring: t.NoNewKeyring,
		ShimCgroup: t.ShimCgroup, IoUid: t.IoUid, IoGid: t.IoGid, BinaryName: t.BinaryName, Root: t.Root,
		CriuImagePath: t.CriuImagePath, CriuWorkPath: t.CriuWorkPath,
	}, ShimGroup: t.ShimGroup}, nil
}

// CheckShimGroup refuses a shim grouping that is not one of
// ShimGroupModes (or empty), naming where it came from.
func CheckShimGroup(where, mode string) error {
	if mode == "" || slices.Contains(ShimGroupModes, mode) {
		return nil
	}
	return fmt.Errorf("%s %q: want one of %s: %w", where, mode, strings.Join(ShimGroupModes, ", "), errdefs.ErrInvalidArgument)
}

// maxOptionsFile bounds the options file: a table of a dozen keys.
const maxOptionsFile = 1 << 20

// readOptionsFile reads the file containerd's config names as ConfigPath:
// a regular file, of sane size.
func readOptionsFile(p string) ([]byte, error) {
	// Non-blocking: a fifo named here must fail the regular-file check,
	// not hang the open.
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		var class error = errdefs.ErrInvalidArgument
		if errors.Is(err, os.ErrNotExist) {
			class = errdefs.ErrNotFound
		}
		return nil, fmt.Errorf("runtime options ConfigPath %s: %v: %w", p, err, class)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("runtime options ConfigPath %s is not a regular file: %w", p, errdefs.ErrInvalidArgument)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxOptionsFile+1))
	if err != nil {
		return nil, fmt.Errorf("runtime options ConfigPath %s: %v: %w", p, err, errdefs.ErrInvalidArgument)
	}
	if len(data) > maxOptionsFile {
		return nil, fmt.Errorf("runtime options ConfigPath %s is larger than %d KiB: %w", p, maxOptionsFile>>10, errdefs.ErrInvalidArgument)
	}
	return data, nil
}
