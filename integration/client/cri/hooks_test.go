package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minishim/containerd-shim-mini-v2/integration"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// hooksHandlerSuffix names the second handler of each runtime, whose base
// spec (containerd's base_runtime_spec, the way GPU toolkits and others
// add hooks to every container of a RuntimeClass) carries hooks.
const hooksHandlerSuffix = "-hooks"

// writeHooksSpec writes containerd's default spec with a recording hook of
// each kind, and the recorder: it appends the hook's kind and the state it
// read to the suite's hooks log.
func writeHooksSpec(ctx context.Context, v integration.Version) (string, error) {
	dir := filepath.Join(suite.Dir, "hooks")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	recorder := filepath.Join(dir, "record")
	script := "#!/bin/sh\necho \"$1 $(cat)\" >> " + filepath.Join(dir, "log") + "\n"
	if err := os.WriteFile(recorder, []byte(script), 0o755); err != nil {
		return "", err
	}
	res := integration.Run(ctx, nil, nil, v.CtrPath(), "oci", "spec")
	if res.ExitCode != 0 {
		return "", fmt.Errorf("ctr oci spec: %s", res)
	}
	var s specs.Spec
	if err := json.Unmarshal([]byte(res.Stdout), &s); err != nil {
		return "", err
	}
	hook := func(kind string) []specs.Hook {
		return []specs.Hook{{Path: recorder, Args: []string{"record", kind}, Env: []string{"PATH=/usr/bin:/bin"}}}
	}
	s.Hooks = &specs.Hooks{
		CreateRuntime: hook("createRuntime"), CreateContainer: hook("createContainer"),
		Poststart: hook("poststart"), Poststop: hook("poststop"),
	}
	data, err := json.Marshal(&s)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "base-spec.json")
	return path, os.WriteFile(path, data, 0o644)
}

// hooksOf reads which hooks ran for container id, in order.
func hooksOf(t *testing.T, id string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(suite.Dir, "hooks", "log"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		kind, state, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		var st specs.State
		if json.Unmarshal([]byte(state), &st) == nil && st.ID == id {
			out = append(out, kind+"/"+string(st.Status))
		}
	}
	return out
}

// TestCRIHooks: hooks a RuntimeClass's base spec gives every container
// run at their moments, through the CRI, with the container's state.
func TestCRIHooks(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, tg target) {
		tg.handler += hooksHandlerSuffix
		p := runPod(t, tg, "hooks", false)
		c := p.start("hooked", &runtime.ContainerConfig{})
		c.mustSucceed("true")
		want := []string{"createRuntime/creating", "createContainer/creating", "poststart/running"}
		if tg.runtime == integration.RuncRuntime {
			// Released runc runs poststart during create.
			want[2] = "poststart/created"
		}
		if got := hooksOf(t, c.id); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("hooks of a running container: %v, want %v", got, want)
		}
		c.remove()
		want = append(want, "poststop/stopped")
		deadline := time.Now().Add(10 * time.Second)
		for strings.Join(hooksOf(t, c.id), " ") != strings.Join(want, " ") && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if got := hooksOf(t, c.id); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("hooks after removal: %v, want %v", got, want)
		}
	})
}
