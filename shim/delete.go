package shim

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/minishim/containerd-shim-mini-v2/linux"
	"github.com/minishim/containerd-shim-mini-v2/task"
)

// runDelete is the `delete` action containerd runs when the shim is gone:
// clean up from what is on disk and report how the container ended as a
// task DeleteResponse on stdout.
func runDelete(ctx context.Context, o *options, stdout, stderr io.Writer) error {
	// containerd shows anything on stderr as warnings: keep it quiet
	// unless asked.
	logger := newLogger(stderr, o.debug, slog.LevelWarn, "namespace", o.namespace, "id", o.id)

	bundle, err := o.bundleDir()
	if err != nil {
		return err
	}
	if err := removeStaleSocket(deadShimSocket(o, bundle)); err != nil {
		logger.Warn("remove stale shim socket", "error", err)
	}
	resp, err := task.Cleanup(ctx, o.namespace, o.id, bundle)
	if err != nil {
		return err
	}
	out, err := proto.Marshal(resp)
	if err != nil {
		return fmt.Errorf("marshal delete response: %w", err)
	}
	if _, err := stdout.Write(out); err != nil {
		return fmt.Errorf("write delete response: %w", err)
	}
	return nil
}

// deadShimSocket is the socket the shim of this container served: the one
// start recorded in the bundle, else the one start would have picked.
func deadShimSocket(o *options, bundle string) string {
	if b, err := os.ReadFile(filepath.Join(bundle, addressFileName)); err == nil {
		if a := strings.TrimSpace(string(b)); strings.HasPrefix(a, unixScheme) {
			return socketPathOf(a)
		}
	}
	// Only start saw the runtime options: their grouping is not known
	// here, the annotations' is.
	group, err := linux.ShimGroup(bundle, o.id, "")
	if err != nil {
		group.Name, group.AllNamespaces = o.id, false
	}
	p, err := groupSocketPath(defaultSocketDir, o.address, o.namespace, group)
	if err != nil {
		return ""
	}
	return p
}
