package initproc

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// keyringPerm is what init gives its session keyring: its possessors may
// do anything; processes of the same user may view, read, search and link
// it (what runc grants), which lets the container's execs find it by name
// and join it.
const keyringPerm = 0x3f000000 | 0x001b0000

// joinSessionKeyring gives the process the container's own session
// keyring, "_ses.<id>", as runc does, instead of the shim's: keys that
// processes of the host keep in theirs stay out of reach. Init makes it;
// an exec joins it (or, running as another user, gets one of its own).
// A kernel without keys (ENOSYS) has nothing to isolate.
func joinSessionKeyring(id string, init bool) error {
	name := SessionKeyringName(id)
	ring, err := unix.KeyctlJoinSessionKeyring(name)
	if errors.Is(err, unix.ENOSYS) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("join session keyring %s: %w", name, err)
	}
	if init {
		if err := unix.KeyctlSetperm(ring, keyringPerm); err != nil {
			return fmt.Errorf("set permissions of session keyring %s: %w", name, err)
		}
	}
	return nil
}

// SessionKeyringName is the name of container id's session keyring.
func SessionKeyringName(id string) string { return "_ses." + id }
