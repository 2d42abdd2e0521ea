package task

import (
	"fmt"
	"regexp"

	"github.com/containerd/errdefs"
)

// maxIDLength is containerd's bound on identifiers.
const maxIDLength = 76

// validID is containerd's identifier form: alphanumerics joined by single
// '.', '_' or '-'. containerd checks its own ids; a caller of the shim's
// socket may not, and an id names cgroups and paths here.
var validID = regexp.MustCompile(`^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$`)

// checkID refuses an id containerd itself would refuse; what names the id
// in the error ("container id", "exec id").
func checkID(what, id string) error {
	shown := id
	if len(shown) > 80 {
		shown = shown[:80] + "..."
	}
	switch {
	case id == "":
		return fmt.Errorf("%s is empty: %w", what, errdefs.ErrInvalidArgument)
	case len(id) > maxIDLength:
		return fmt.Errorf("%s %q is %d bytes, more than %d: %w", what, shown, len(id), maxIDLength, errdefs.ErrInvalidArgument)
	case !validID.MatchString(id):
		return fmt.Errorf("%s %q: only letters, digits and single '.', '_' or '-' between them: %w", what, shown, errdefs.ErrInvalidArgument)
	}
	return nil
}
