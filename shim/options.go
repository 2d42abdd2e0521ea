package shim

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/containerd/errdefs"
)

// Environment containerd sets for every shim it runs.
const (
	envTTRPCAddress    = "TTRPC_ADDRESS"
	envGRPCAddress     = "GRPC_ADDRESS"
	envNamespace       = "NAMESPACE"
	defaultSocketDir   = "/run/containerd/s"
	actionStart        = "start"
	actionDelete       = "delete"
	actionServe        = ""
	addressFileName    = "address"
	shimPidFileName    = "shim.pid"
	shimLogFifoName    = "log"
	maxBootstrapStdin  = 10 << 20
	socketPathMaxBytes = 106
)

// options is everything one invocation of the binary was told, by flags and
// by environment.
type options struct {
	namespace     string
	address       string // containerd's grpc address
	publishBinary string
	id            string
	bundle        string
	debug         bool
	socket        string // path of the socket the daemon serves; set by start
	version       bool
	info          bool
	action        string

	ttrpcAddress string
}

// parseOptions reads args (without the program name) and the environment.
// The environment fills what the flags leave empty because containerd passes
// some values only one way depending on its version.
func parseOptions(args []string, getenv func(string) string, errOut io.Writer) (*options, error) {
	var o options
	fs := flag.NewFlagSet("containerd-shim-mini-v2", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.StringVar(&o.namespace, "namespace", "", "containerd namespace that owns the shim")
	fs.StringVar(&o.address, "address", "", "grpc address of containerd")
	fs.StringVar(&o.publishBinary, "publish-binary", "", "containerd binary (unused: events go over ttrpc to $TTRPC_ADDRESS)")
	fs.StringVar(&o.id, "id", "", "id of the task")
	fs.StringVar(&o.bundle, "bundle", "", "bundle path, when it is not the working directory")
	fs.BoolVar(&o.debug, "debug", false, "log at debug level")
	fs.StringVar(&o.socket, "socket", "", "socket path the daemon serves (set by start)")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	fs.BoolVar(&o.version, "v", false, "")
	fs.BoolVar(&o.info, "info", false, "read runtime options from stdin, print the runtime info protobuf and exit")
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("parse arguments: %w", err)
	}
	switch fs.NArg() {
	case 0:
		o.action = actionServe
	case 1:
		o.action = fs.Arg(0)
	default:
		return nil, fmt.Errorf("unexpected arguments %q: %w", fs.Args()[1:], errdefs.ErrInvalidArgument)
	}
	switch o.action {
	case actionServe, actionStart, actionDelete:
	default:
		return nil, fmt.Errorf("unknown action %q: %w", o.action, errdefs.ErrInvalidArgument)
	}

	if o.namespace == "" {
		o.namespace = getenv(envNamespace)
	}
	if o.address == "" {
		o.address = getenv(envGRPCAddress)
	}
	o.ttrpcAddress = getenv(envTTRPCAddress)
	if o.version || o.info {
		return &o, nil
	}
	if o.namespace == "" {
		return nil, fmt.Errorf("-namespace is required: %w", errdefs.ErrInvalidArgument)
	}
	if o.id == "" {
		return nil, fmt.Errorf("-id is required: %w", errdefs.ErrInvalidArgument)
	}
	return &o, nil
}

// bundleDir is the bundle: the -bundle flag, else the working directory
// containerd started us in.
func (o *options) bundleDir() (string, error) {
	if o.bundle != "" {
		return o.bundle, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("bundle: working directory: %w", err)
	}
	return wd, nil
}

// daemonArgs are the flags the long-running copy is started with: the
// same identity, no action, and the socket it inherits as fd 3.
func (o *options) daemonArgs(socketPath, containerdAddress string, debug bool) []string {
	args := []string{
		"-namespace", o.namespace,
		"-id", o.id,
		"-address", containerdAddress,
		"-socket", socketPath,
	}
	if o.bundle != "" {
		args = append(args, "-bundle", o.bundle)
	}
	if debug {
		args = append(args, "-debug")
	}
	return args
}
