// Command demo starts a private containerd, runs containers with the mini
// runtime through ctr, shows their output, states and task events, checks
// that nothing was left behind and tears everything down. Needs root and
// what hack/install-deps.sh installs; `make demo` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/minishim/containerd-shim-mini-v2/integration"
)

func main() {
	version := flag.String("containerd", "2.4", "containerd version to start: 1.6 or 2.4")
	runtime := flag.String("runtime", integration.MiniRuntime, "runtime to run the containers with")
	shim := flag.String("shim", "", "path of containerd-shim-mini-v2 (default: build it into a temp dir)")
	flag.Parse()
	if err := run(*version, *runtime, *shim); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func run(versionName, runtime, shim string) (err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	version, err := integration.LookupVersion(versionName)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "mini-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	shimDir, err := integration.ShimDir(ctx, shim, dir)
	if err != nil {
		return err
	}
	rootfs := filepath.Join(dir, "rootfs")
	if err := integration.BuildBusyboxRootfs(ctx, rootfs); err != nil {
		return err
	}
	c, err := integration.StartContainerd(ctx, integration.Options{Version: version, ShimDir: shimDir})
	if err != nil {
		return err
	}
	defer func() {
		if serr := c.Stop(context.Background()); serr != nil && err == nil {
			err = serr
		}
	}()
	fmt.Printf("== containerd %s on %s (PATH=%s)\n", version.Name, c.Address, c.PATH)
	events, err := c.WatchEvents(ctx)
	if err != nil {
		return err
	}
	defer events.Stop()

	suffix := integration.RandomSuffix()
	runID, bgID := "demo-run-"+suffix, "demo-sleep-"+suffix
	ctr := func(args ...string) integration.Result {
		fmt.Printf("\n$ ctr %s\n", shellJoin(args))
		res := c.Ctr(ctx, nil, args...)
		fmt.Print(indent(res.Stdout), indent(res.Stderr))
		fmt.Printf("(exit code %d)\n", res.ExitCode)
		return res
	}

	ctr("run", "--rm", "--runtime", runtime, "--rootfs", rootfs, runID,
		"/bin/sh", "-c", "echo hello from $(hostname), pid $$; id; ls /; exit 3")

	if res := ctr("run", "--detach", "--runtime", runtime, "--rootfs", rootfs, bgID, "/bin/sleep", "1000"); res.ExitCode != 0 {
		return fmt.Errorf("detached run failed")
	}
	ctr("tasks", "list")
	ctr("tasks", "ps", bgID)
	if shimProc, ok := c.ShimProcess(runtime, bgID); ok {
		if mem, err := integration.ReadMemoryUsage(shimProc.Pid); err == nil {
			fmt.Printf("\nshim pid %d: Rss %d KiB, Anonymous %d KiB\n", shimProc.Pid, mem.RssKiB, mem.AnonymousKiB)
		}
	}
	ctr("tasks", "kill", "--signal", "SIGKILL", bgID)
	waitStopped(ctx, c, bgID)
	ctr("tasks", "list")
	ctr("tasks", "delete", bgID)
	ctr("containers", "delete", bgID)

	time.Sleep(300 * time.Millisecond)
	fmt.Printf("\n== events (ctr events)\n")
	for _, e := range events.Events(func(e integration.Event) bool {
		id := e.ContainerID()
		return id == runID || id == bgID
	}) {
		fmt.Println("   " + e.Raw)
	}

	fmt.Printf("\n== leak check\n")
	clean := true
	for _, id := range []string{runID, bgID} {
		for _, l := range c.WaitNoLeaks(ctx, integration.ShimBinaryName(runtime), id, 5*time.Second) {
			fmt.Printf("   LEAK %s: %s\n", id, l)
			clean = false
		}
	}
	if clean {
		fmt.Println("   nothing left: no processes, mounts, cgroups, sockets or bundles")
	}
	return nil
}

func waitStopped(ctx context.Context, c *integration.Containerd, id string) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		res := c.Ctr(ctx, nil, "tasks", "list")
		for _, line := range strings.Split(res.Stdout, "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == id && f[2] == "STOPPED" {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "   " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n   ") + "\n"
}

// shellJoin quotes the arguments that need it, for display.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		if strings.ContainsAny(a, " $;'\"") {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}
