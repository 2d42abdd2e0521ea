package cri

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// securityContext wraps a container security context into the Linux
// config it lives in.
func securityContext(sc *runtime.LinuxContainerSecurityContext) *runtime.LinuxContainerConfig {
	return &runtime.LinuxContainerConfig{SecurityContext: sc}
}

// expectStatus checks fields of /proc/PID/status for both the container's
// init and a process exec'd into it.
func expectStatus(t *testing.T, c *container, want map[string]string) {
	t.Helper()
	names := make([]string, 0, len(want))
	for k := range want {
		names = append(names, k)
	}
	for _, pid := range []string{"1", "self"} {
		got := c.statusFields(pid, names...)
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: /proc/%s/status %s: %q, want %q", c.name, pid, k, got[k], v)
			}
		}
	}
}

// TestCRISeccompRuntimeDefault: the CRI puts containerd's default profile
// into the spec; the runtime must load it as a filter (mode 2).
func TestCRISeccompRuntimeDefault(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, tg target) {
		p := runPod(t, tg, "sc-default", false)
		c := p.start("default", &runtime.ContainerConfig{Linux: securityContext(&runtime.LinuxContainerSecurityContext{
			Seccomp: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault},
		})})
		expectStatus(t, c, map[string]string{"Seccomp": "2"})
	})
}

// TestCRISeccompUnconfined: no profile in the spec, no filter.
func TestCRISeccompUnconfined(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, tg target) {
		p := runPod(t, tg, "sc-unconfined", false)
		c := p.start("unconfined", &runtime.ContainerConfig{Linux: securityContext(&runtime.LinuxContainerSecurityContext{
			Seccomp: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Unconfined},
		})})
		expectStatus(t, c, map[string]string{"Seccomp": "0"})
	})
}

// TestCRIDefaultSecurity checks the rest of what a RuntimeDefault
// container with NoNewPrivs gets: no_new_privs set, and the effective
// capabilities the CRI's default list makes (chown, dac_override, fowner,
// fsetid, kill, setgid, setuid, setpcap, net_bind_service, net_raw,
// sys_chroot, mknod, audit_write, setfcap: Docker's default set).
func TestCRIDefaultSecurity(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, tg target) {
		p := runPod(t, tg, "sc-nnp", false)
		c := p.start("nnp", &runtime.ContainerConfig{Linux: securityContext(&runtime.LinuxContainerSecurityContext{
			Seccomp:    &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault},
			NoNewPrivs: true,
		})})
		expectStatus(t, c, map[string]string{"Seccomp": "2", "NoNewPrivs": "1", "CapEff": "00000000a80425fb"})
	})
}

// localProfile is an OCI seccomp section (containerd's Localhost profiles
// are decoded straight into specs.LinuxSeccomp) that allows everything but
// changing modes and the hostname. errnoRet is left out on purpose: the
// runtime spec makes EPERM the default. fchmodat2 (Linux 6.6) is newer
// than some libseccomp versions, which runtimes then skip.
const localProfile = `{
  "defaultAction": "SCMP_ACT_ALLOW",
  "syscalls": [
    {"names": ["chmod", "fchmod", "fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO"},
    {"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"}
  ]
}`

// TestCRISeccompLocalhost runs the same commands in two containers with
// CAP_SYS_ADMIN, one with a Localhost profile and one without: chmod and
// sethostname (in a UTS namespace of its own: the pod shares the host's)
// fail with EPERM under the profile and work without it, so the profile
// and nothing else is what refuses them.
func TestCRISeccompLocalhost(t *testing.T) {
	if !json.Valid([]byte(localProfile)) {
		t.Fatal("localProfile is not JSON")
	}
	profile := filepath.Join(suite.Dir, "seccomp-local.json")
	if err := os.WriteFile(profile, []byte(localProfile), 0o644); err != nil {
		t.Fatal(err)
	}
	forEachRuntime(t, func(t *testing.T, tg target) {
		p := runPod(t, tg, "sc-local", false)
		sysAdmin := &runtime.Capability{AddCapabilities: []string{"SYS_ADMIN"}}
		profiled := p.start("profiled", &runtime.ContainerConfig{Linux: securityContext(&runtime.LinuxContainerSecurityContext{
			Capabilities: sysAdmin,
			Seccomp:      &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: profile},
		})})
		plain := p.start("plain", &runtime.ContainerConfig{Linux: securityContext(&runtime.LinuxContainerSecurityContext{
			Capabilities: sysAdmin,
		})})

		expectStatus(t, profiled, map[string]string{"Seccomp": "2"})
		expectStatus(t, plain, map[string]string{"Seccomp": "0"})

		for _, c := range []*container{profiled, plain} {
			c.mustSucceed("touch /tmp/x")
		}
		if r := profiled.exec("/bin/chmod", "600", "/tmp/x"); r.exitCode == 0 || !strings.Contains(r.combined(), "Operation not permitted") {
			t.Errorf("chmod under the profile: want EPERM (Operation not permitted):\n%s", r)
		}
		if mode := strings.TrimSpace(plain.mustSucceed("chmod 600 /tmp/x && stat -c %a /tmp/x")); mode != "600" {
			t.Errorf("chmod without a profile: mode %q, want 600", mode)
		}

		const rename = "unshare -u /bin/sh -c 'hostname minicri-uts && hostname'"
		if r := profiled.sh(rename); r.exitCode == 0 || !strings.Contains(r.combined(), "sethostname: Operation not permitted") {
			t.Errorf("sethostname under the profile: want EPERM (sethostname: Operation not permitted):\n%s", r)
		}
		if got := strings.TrimSpace(plain.mustSucceed(rename)); got != "minicri-uts" {
			t.Errorf("sethostname without a profile: hostname %q, want minicri-uts", got)
		}
	})
}
