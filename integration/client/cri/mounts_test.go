package cri

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestCRIPropagationBidirectional: a privileged container's bidirectional
// hostPath (the CRI asks for rshared) carries mounts both ways: one made
// inside shows on the host, one made on the host afterwards shows inside.
func TestCRIPropagationBidirectional(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, tg target) {
		dir := hostTmpfs(t, "bidi", true)
		p := runPod(t, tg, "bidi", true)
		c := p.start("bidi", &runtime.ContainerConfig{
			Mounts: []*runtime.Mount{{ContainerPath: "/mnt/bidi", HostPath: dir, Propagation: runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL}},
			Linux:  securityContext(&runtime.LinuxContainerSecurityContext{Privileged: true}),
		})

		c.mustSucceed("mkdir /mnt/bidi/sub && mount -t tmpfs -o size=1m minicri-from-container /mnt/bidi/sub && echo inside > /mnt/bidi/sub/file")
		if m, ok := hostMount(t, filepath.Join(dir, "sub")); !ok || m.Source != "minicri-from-container" {
			// Peer groups (shared:N, master:N) tell where propagation broke.
			t.Errorf("container's mount at /mnt/bidi/sub is not on the host at %s/sub (found: %v %+v)\nhost: %s\ncontainer:\n%s",
				dir, ok, m, hostMountinfo(t, dir), c.sh("grep -E ' / | /mnt/bidi' /proc/self/mountinfo").stdout)
		} else if data, err := os.ReadFile(filepath.Join(dir, "sub", "file")); err != nil || string(data) != "inside\n" {
			t.Errorf("file written in the container's mount, read on the host: %q %v", data, err)
		}

		if err := mountTmpfs(filepath.Join(dir, "host"), "minicri-from-host"); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "host", "file"), []byte("outside\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if r := c.sh("grep ' /mnt/bidi/host ' /proc/self/mountinfo && cat /mnt/bidi/host/file"); r.exitCode != 0 || !strings.Contains(r.stdout, "minicri-from-host") || !strings.HasSuffix(r.stdout, "outside\n") {
			t.Errorf("host's mount made after start is not in the container:\n%s", r)
		}
	})
}

// TestCRIPropagationHostToContainer: a host-to-container hostPath (rslave)
// shows a mount made on the host after the container started; a private
// one of the same directory, in a second container, does not, which shows
// that the mount arrived by propagation and not by the bind.
func TestCRIPropagationHostToContainer(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, tg target) {
		dir := hostTmpfs(t, "h2c", true)
		p := runPod(t, tg, "h2c", false)
		slave := p.start("slave", &runtime.ContainerConfig{
			Mounts: []*runtime.Mount{{ContainerPath: "/mnt/h2c", HostPath: dir, Propagation: runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}},
		})
		private := p.start("private", &runtime.ContainerConfig{
			Mounts: []*runtime.Mount{{ContainerPath: "/mnt/h2c", HostPath: dir, Propagation: runtime.MountPropagation_PROPAGATION_PRIVATE}},
		})

		if err := mountTmpfs(filepath.Join(dir, "sub"), "minicri-from-host"); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "sub", "file"), []byte("outside\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		const look = "grep ' /mnt/h2c/sub ' /proc/self/mountinfo && cat /mnt/h2c/sub/file"
		if r := slave.sh(look); r.exitCode != 0 || !strings.Contains(r.stdout, "minicri-from-host") || !strings.HasSuffix(r.stdout, "outside\n") {
			t.Errorf("host-to-container: host's mount made after start is not in the container:\n%s", r)
		}
		if r := private.sh(look); r.exitCode == 0 || strings.Contains(r.stdout, "minicri-from-host") {
			t.Errorf("private: host's mount made after start reached the container:\n%s", r)
		}
	})
}

// TestCRIRecursiveReadOnly: a read-only hostPath with RecursiveReadOnly
// (the CRI turns it into "rro") is read-only in its submounts too, where a
// plain read-only one ("ro") leaves them writable.
//
// The CRI only passes "rro" to a handler it found able to: at startup it
// runs the shim's `-info` (containerd's RuntimeInfo), and the handler gets
// RecursiveReadOnlyMounts only if the OCI features document in it lists
// "rro" among mountOptions and the kernel is 5.12 or newer; otherwise
// CreateContainer fails with ErrRROUnsupported. Status reports what it
// found, per handler. With no features document at all, containerd 2.4.2
// crashes instead (a nil dereference), so then the case does not ask.
func TestCRIRecursiveReadOnly(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, tg target) {
		dir := hostTmpfs(t, "rro", false)
		if err := mountTmpfs(filepath.Join(dir, "sub"), "minicri-rro-sub"); err != nil {
			t.Fatal(err)
		}
		features := suite.handlers[tg.handler].GetFeatures()
		if features == nil {
			// containerd 2.4.2 dereferences the handler's nil Features
			// (internal/cri/opts/spec_linux_opts.go:184) and dies, taking
			// every other case with it: do not ask.
			t.Fatalf("handler %q: the CRI found no features in its runtime's `-info` (no OCI features document), so it cannot use rro; "+
				"not sending the request, which would crash containerd 2.4.2", tg.handler)
		}
		advertised := features.GetRecursiveReadOnlyMounts()
		p := runPod(t, tg, "rro", false)
		c, err := p.create("rro", &runtime.ContainerConfig{Mounts: []*runtime.Mount{
			{ContainerPath: "/mnt/rro", HostPath: dir, Readonly: true, RecursiveReadOnly: true},
			{ContainerPath: "/mnt/ro", HostPath: dir, Readonly: true},
		}})
		switch {
		case err != nil && !advertised:
			t.Fatalf("the CRI refuses rro for handler %q: its runtime's `-info` lists no \"rro\" mount option: %v", tg.handler, err)
		case err != nil:
			t.Fatalf("handler %q advertises rro: %v", tg.handler, err)
		case !advertised:
			t.Fatalf("handler %q does not advertise rro, yet the CRI created a container with it", tg.handler)
		}
		ctx, cancel := callCtx()
		defer cancel()
		if _, err := suite.rs.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: c.id}); err != nil {
			t.Fatalf("StartContainer %s: %v\n%s", c.name, err, suite.c.LogAbout(c.id, 40))
		}

		for _, path := range []string{"/mnt/rro/x", "/mnt/rro/sub/x", "/mnt/ro/x"} {
			if r := c.exec("/bin/touch", path); r.exitCode == 0 || !strings.Contains(r.combined(), "Read-only file system") {
				t.Errorf("write to %s: want EROFS (Read-only file system):\n%s", path, r)
			}
		}
		if r := c.exec("/bin/touch", "/mnt/ro/sub/x"); r.exitCode != 0 {
			t.Errorf("write to a submount of a plain read-only mount: want it to work, as with runc:\n%s", r)
		}
	})
}
