package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/minishim/containerd-shim-mini-v2/integration"
)

// memoryRunning is how many sleeping containers the memory figures hold.
const memoryRunning = 10

// shimGroupAnnotation asks our runtime for one shim per namespace.
const shimGroupAnnotation = "io.containerd.mini.v2.shim-group"

// memoryFigures are the shims' memory with memoryRunning containers up.
type memoryFigures struct {
	shims  int
	pssKiB int // sum over the shims
	rssKiB int
	// memfdKiB is the size of the memfd files the shims hold (a sealed
	// copy of a binary, say): memory of the node that no Pss shows.
	memfdKiB   int
	perContPss float64 // (pssKiB + memfdKiB) / memoryRunning
	idleRssKiB int     // one idle shim serving one container
	// onePssKiB is a shared shim's Pss while it served its first
	// container alone: its fixed cost, beside which each further
	// container adds (pssKiB - onePssKiB) / (memoryRunning - 1).
	onePssKiB int
}

// memoryOn prints the shims' memory per running container: one shim each
// for both runtimes, and for ours also every container in one shared shim
// (the namespace grouping), beside one idle shim's RSS.
func memoryOn(ctx context.Context, cfg config, c *integration.Containerd, v integration.Version, rootfs string) error {
	runtimes := []string{cfg.a, cfg.b}
	fmt.Printf("containerd %s: memory of the shims with %d sleeping containers up, each exec'd into once (as a probe does),\n", v.Name, memoryRunning)
	fmt.Printf("  one shim each; ours also in one shared shim (%s=namespace); Pss from /proc/PID/smaps_rollup\n", shimGroupAnnotation)
	fmt.Printf("  two seconds after the last start (idle), plus the memfd files the shims hold\n")
	var figs []memoryFigures
	var labels []string
	for _, rt := range runtimes {
		f, err := runningMemory(ctx, c, v, rt, rootfs, false)
		if err != nil {
			return err
		}
		idle, err := idleShimMemory(ctx, c, v, rt, rootfs)
		if err != nil {
			return err
		}
		f.idleRssKiB = idle.RssKiB
		figs, labels = append(figs, f), append(labels, integration.ShortRuntime(rt))
	}
	if cfg.a == integration.MiniRuntime {
		f, err := runningMemory(ctx, c, v, cfg.a, rootfs, true)
		if err != nil {
			return err
		}
		figs, labels = append(figs, f), append(labels, integration.ShortRuntime(cfg.a)+" shared")
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "\tshims\tPss sum KiB\tRss sum KiB\tmemfd KiB\t(Pss+memfd) per container KiB\tratio to %s\tidle shim Rss KiB\t\n", labels[1])
	for k, f := range figs {
		idle := "-"
		if f.idleRssKiB > 0 {
			idle = fmt.Sprint(f.idleRssKiB)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.0f\t%.2f\t%s\t\n", labels[k], f.shims, f.pssKiB, f.rssKiB, f.memfdKiB, f.perContPss, f.perContPss/figs[1].perContPss, idle)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if shared := figs[len(figs)-1]; shared.onePssKiB > 0 {
		more := float64(shared.pssKiB-shared.onePssKiB) / (memoryRunning - 1)
		fmt.Printf("  shared shim: Pss %d KiB serving one container, %d KiB serving %d: each container more costs %.0f KiB (%.2f of %s's per container)\n",
			shared.onePssKiB, shared.pssKiB, memoryRunning, more, more/figs[1].perContPss, labels[1])
	}
	fmt.Println()
	return nil
}

// runningMemory starts memoryRunning sleeping containers of runtime rt
// (shared: all in one namespace shim, our runtime only), sums the memory
// of the shims serving them, and removes them.
func runningMemory(ctx context.Context, c *integration.Containerd, v integration.Version, rt, rootfs string, shared bool) (memoryFigures, error) {
	var f memoryFigures
	ids := make([]string, 0, memoryRunning)
	defer func() {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		for _, id := range ids {
			c.ForceCleanup(cctx, integration.ShimBinaryName(rt), id)
		}
	}()
	var spec *specs.Spec
	if shared {
		base, err := c.DefaultSpec(ctx, rootfs)
		if err != nil {
			return f, err
		}
		if base.Annotations == nil {
			base.Annotations = map[string]string{}
		}
		base.Annotations[shimGroupAnnotation] = "namespace"
		spec = base
	}
	for i := 0; i < memoryRunning; i++ {
		id := fmt.Sprintf("bmem%s-%s", v.Tag(), integration.RandomSuffix())
		ids = append(ids, id)
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		var res integration.Result
		if spec != nil {
			path, err := c.WriteSpec(id, spec, "/bin/sleep", "100000")
			if err != nil {
				cancel()
				return f, err
			}
			res = c.Ctr(rctx, nil, "run", "--detach", "--runtime", rt, "--config", path, id)
		} else {
			res = c.Ctr(rctx, nil, "run", "--detach", "--runtime", rt, "--rootfs", rootfs, id, "/bin/sleep", "100000")
		}
		cancel()
		if res.ExitCode != 0 {
			return f, fmt.Errorf("%s on containerd %s: %s", rt, v.Name, res)
		}
		rctx, cancel = context.WithTimeout(ctx, time.Minute)
		res = c.Ctr(rctx, nil, "tasks", "exec", "--exec-id", "probe", id, "/bin/true")
		cancel()
		if res.ExitCode != 0 {
			return f, fmt.Errorf("%s on containerd %s: exec: %s", rt, v.Name, res)
		}
		if shared && i == 0 {
			time.Sleep(2 * time.Second)
			p, ok := c.ShimProcess(rt, id)
			if !ok {
				return f, fmt.Errorf("no %s process serving %s", integration.ShimBinaryName(rt), id)
			}
			m, err := integration.ReadMemoryUsage(p.Pid)
			if err != nil {
				return f, err
			}
			f.onePssKiB = m.PssKiB
		}
	}
	// Past the shims' idle trim (shim/idle.go), as a node's idle shims are.
	time.Sleep(2 * time.Second)
	seen := map[int]bool{}
	for _, id := range ids {
		p, ok := c.ShimProcess(rt, id)
		if !ok {
			if shared {
				continue // served by the first container's shim
			}
			return f, fmt.Errorf("no %s process serving %s", integration.ShimBinaryName(rt), id)
		}
		if seen[p.Pid] {
			continue
		}
		seen[p.Pid] = true
		m, err := integration.ReadMemoryUsage(p.Pid)
		if err != nil {
			return f, err
		}
		f.shims++
		f.pssKiB += m.PssKiB
		f.rssKiB += m.RssKiB
		f.memfdKiB += memfdKiB(p.Pid)
	}
	if shared && f.shims != 1 {
		return f, fmt.Errorf("%d containers with %s=namespace are served by %d shims, want 1", memoryRunning, shimGroupAnnotation, f.shims)
	}
	f.perContPss = float64(f.pssKiB+f.memfdKiB) / memoryRunning
	return f, nil
}

// memfdKiB sums the sizes of the memfd files pid holds open.
func memfdKiB(pid int) int {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var total int64
	for _, e := range ents {
		link, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil || !strings.HasPrefix(link, "/memfd:") {
			continue
		}
		if fi, err := os.Stat(filepath.Join(dir, e.Name())); err == nil {
			total += fi.Size()
		}
	}
	return int(total / 1024)
}
