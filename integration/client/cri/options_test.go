package cri

import (
	"strings"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// optionsHandlerSuffix names the third handler of each runtime, which has
// an options table in containerd's config.
const optionsHandlerSuffix = "-opts"

// handlerOptions is that table: runc's options' names, which this
// runtime reads from CRI's generic options as well.
const handlerOptions = "SystemdCgroup = false\nNoNewKeyring = true"

// TestCRIRuntimeOptions (issue 9): a RuntimeClass's options table reaches
// the runtime. With NoNewKeyring the container keeps the shim's session
// keyring; without the table it gets one of its own, _ses.<id>.
func TestCRIRuntimeOptions(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, tg target) {
		for _, c := range []struct {
			suffix  string
			ownRing bool
		}{{"", true}, {optionsHandlerSuffix, false}} {
			tg := tg
			tg.handler += c.suffix
			// Privileged: /proc/keys is masked otherwise.
			p := runPod(t, tg, "opts", true)
			ctr := p.start("keys", &runtime.ContainerConfig{Linux: securityContext(&runtime.LinuxContainerSecurityContext{Privileged: true})})
			keys := ctr.sh("grep -o ' _ses[.a-z0-9-]*' /proc/keys || true").stdout
			if got := strings.Contains(keys, "_ses."+ctr.id); got != c.ownRing {
				t.Errorf("handler %s: a session keyring of the container's own: %v, want %v:\n%s", tg.handler, got, c.ownRing, keys)
			}
		}
	})
}
