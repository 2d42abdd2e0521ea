package main

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/minishim/containerd-shim-mini-v2/integration"
)

// soakOn runs the long soak on one containerd: cfg.lifecycles
// sequential `ctr run --rm` per runtime with containerd's footprint, then
// cfg.execs sequential execs into one container per runtime with its
// shim's footprint, each read ten times along the way.
func soakOn(ctx context.Context, cfg config, c *integration.Containerd, v integration.Version, rootfs string) error {
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	defer tw.Flush()
	for _, rt := range []string{cfg.a, cfg.b} {
		start := time.Now()
		fp, err := c.SoakLifecycles(ctx, rt, rootfs, fmt.Sprintf("soak%s-%s-", v.Tag(), integration.RandomSuffix()), cfg.lifecycles, max(1, cfg.lifecycles/10))
		if err != nil {
			return fmt.Errorf("%s on containerd %s: %w", rt, v.Name, err)
		}
		fmt.Fprintf(tw, "containerd %s, %s: %d lifecycles in %s; containerd's footprint\t\t\t\t\t\n", v.Name, integration.ShortRuntime(rt), cfg.lifecycles, time.Since(start).Round(time.Second))
		printFootprints(tw, "runs", fp, max(1, cfg.lifecycles/10))

		id := fmt.Sprintf("soakx%s-%s", v.Tag(), integration.RandomSuffix())
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		res := c.Ctr(rctx, nil, "run", "--detach", "--runtime", rt, "--rootfs", rootfs, id, "/bin/sleep", "1000000")
		cancel()
		if res.ExitCode != 0 {
			return fmt.Errorf("%s on containerd %s: %s", rt, v.Name, res)
		}
		start = time.Now()
		fp, err = c.SoakExecs(ctx, rt, id, cfg.execs, max(1, cfg.execs/10))
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		c.ForceCleanup(cctx, integration.ShimBinaryName(rt), id)
		cancel()
		if err != nil {
			return fmt.Errorf("%s on containerd %s: %w", rt, v.Name, err)
		}
		fmt.Fprintf(tw, "containerd %s, %s: %d execs into one container in %s; its shim's footprint\t\t\t\t\t\n", v.Name, integration.ShortRuntime(rt), cfg.execs, time.Since(start).Round(time.Second))
		printFootprints(tw, "execs", fp, max(1, cfg.execs/10))
	}
	return nil
}

func printFootprints(tw *tabwriter.Writer, what string, fp []integration.ProcessFootprint, every int) {
	fmt.Fprintf(tw, "%s\tfds\tthreads\tRss KiB\tAnonymous KiB\t\n", what)
	for i, f := range fp {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t\n", i*every, f.FDs, f.Threads, f.Memory.RssKiB, f.Memory.AnonymousKiB)
	}
	fmt.Fprintf(tw, "\t\t\t\t\t\n")
}
