package integration

import (
	"os"
	"testing"
)

// SharedDir makes a directory with mode under parent (a suite's directory,
// which everyone may pass) and removes it when t ends: containers whose
// root is not host root (a user namespace) reach it.
func SharedDir(t *testing.T, parent, prefix string, mode os.FileMode) string {
	t.Helper()
	dir, err := os.MkdirTemp(parent, prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	return dir
}
