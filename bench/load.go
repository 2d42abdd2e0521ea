package main

import (
	"context"
	"fmt"
	"time"

	"github.com/minishim/containerd-shim-mini-v2/integration"
)

// loadOn runs, per runtime, cfg.loadRuns (200 by default) `ctr run --rm`
// printing 2000 lines each, 10 at a time, under two CPU-burning processes,
// and prints how many lost output.
func loadOn(ctx context.Context, cfg config, c *integration.Containerd, v integration.Version, rootfs string) error {
	for _, rt := range []string{cfg.a, cfg.b} {
		start := time.Now()
		res, err := c.RunLoad(ctx, rt, rootfs, fmt.Sprintf("load%s-%s-", v.Tag(), integration.RandomSuffix()), cfg.loadRuns, 10, 2000, 2)
		if err != nil {
			return err
		}
		fmt.Printf("containerd %s, %s: %d runs of 2000 lines, 10 at a time, 2 cpu burners, in %s: %d lost output, %d failed %v\n",
			v.Name, integration.ShortRuntime(rt), res.Runs, time.Since(start).Round(time.Second), res.Lossy, res.Failed, res.Examples)
	}
	return nil
}
