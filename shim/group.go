package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// shimGroup is the key a container's shim socket is named by: its group
// annotation in bundle/config.json, else its own id.
func shimGroup(bundle, id string) (string, error) {
	path := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return id, nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		return "", fmt.Errorf("parse %s: %w", path, err)
	}
	// These put several containers in one shim, in this order of
	// preference: the keys containerd's runc shim honours, so a pod keeps
	// one shim whichever runtime serves it.
	for _, key := range []string{"io.containerd.runc.v2.group", "io.kubernetes.cri.sandbox-id"} {
		if g := spec.Annotations[key]; g != "" {
			return g, nil
		}
	}
	return id, nil
}
