// Command bench compares two runtimes (by default io.containerd.mini.v2 and
// io.containerd.runc.v2) on a private containerd, and prints ratios a/b:
//
//   - end to end: the wall time of `ctr run --rm ... /bin/true`, also with
//     the spec passed by --config without and with a full linux.resources
//     block and with a seccomp profile, and of `ctr tasks exec ...
//     /bin/true` into a running container, interleaved so drift hits both
//     alike; beside them the same commands through the floor shim
//     (bench/floorshim, which runs nothing), and each runtime's share above
//     that floor;
//   - memory: the shims' Pss per running container with 10 running, one
//     shim each, and for ours also all in one shared shim; one idle shim's
//     Rss;
//   - runtime level (containerd 2.4 only): each shim driven straight over
//     ttrpc, no containerd in the path, per phase (direct.go).
//
// Needs root; `make bench` runs it on containerd 1.6 and 2.4.
//
//	go run ./bench -n 50 -containerd 1.6,2.4
//	go run ./bench -direct -steps   # runtime level only, with our shim's step timings
//	go run ./bench -memory          # memory only
//	go run ./bench -a io.containerd.runc.v2   # runc against itself: the noise floor
//	go run ./bench -soak -lifecycles 1000 -execs 5000   # what stays behind
//	go run ./bench -load -containerd 1.6,2.4   # output lost under load
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/minishim/containerd-shim-mini-v2/integration"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

type config struct {
	runs     int
	warmup   int
	versions []string
	a, b     string
	shim     string
	// soak: instead of timing, run lifecycles and execs and print the
	// footprints (containerd's, the shim's) along the way.
	soak              bool
	lifecycles, execs int
	// load: instead of timing, concurrent runs printing much, under cpu
	// load, counting lost output.
	load     bool
	loadRuns int
	// direct: only the runtime-level figures (see direct.go); steps: and
	// our shim's own step timings, from its debug log.
	direct, steps bool
	// memory: only the memory figures (see memory.go).
	memory bool
}

func main() {
	var cfg config
	var versions string
	flag.IntVar(&cfg.runs, "n", 20, "measured runs per runtime")
	flag.IntVar(&cfg.warmup, "warmup", 2, "unmeasured runs per runtime first")
	flag.StringVar(&versions, "containerd", "2.4", "containerd versions, comma separated: 1.6,2.4")
	flag.StringVar(&cfg.a, "a", integration.MiniRuntime, "runtime measured (numerator of the ratios)")
	flag.StringVar(&cfg.b, "b", integration.RuncRuntime, "reference runtime (denominator)")
	flag.StringVar(&cfg.shim, "shim", "", "path of containerd-shim-mini-v2 (default: build it into a temp dir)")
	flag.BoolVar(&cfg.soak, "soak", false, "soak instead: sequential lifecycles and execs, footprints printed")
	flag.IntVar(&cfg.lifecycles, "lifecycles", 1000, "with -soak: lifecycles per runtime")
	flag.IntVar(&cfg.execs, "execs", 5000, "with -soak: execs into one container per runtime")
	flag.BoolVar(&cfg.load, "load", false, "load instead: concurrent runs printing 2000 lines each under cpu burners, lost output counted")
	flag.IntVar(&cfg.loadRuns, "load-runs", 200, "with -load: runs per runtime")
	flag.BoolVar(&cfg.direct, "direct", false, "only the runtime-level figures: each shim driven over ttrpc, no containerd in the path")
	flag.BoolVar(&cfg.memory, "memory", false, "only the memory figures: shims' Pss per running container, one shim each and shared")
	flag.BoolVar(&cfg.steps, "steps", false, "with -direct: shims log at debug level, and our shim's per-step timings are printed")
	flag.Parse()
	cfg.versions = strings.Split(versions, ",")
	if cfg.runs < 1 {
		fmt.Fprintln(os.Stderr, "bench: -n must be at least 1")
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func run(cfg config) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "mini-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	shimDir, err := prepareShims(ctx, cfg, dir)
	if err != nil {
		return err
	}
	rootfs := filepath.Join(dir, "rootfs")
	if err := integration.BuildBusyboxRootfs(ctx, rootfs); err != nil {
		return err
	}
	for _, name := range cfg.versions {
		v, err := integration.LookupVersion(strings.TrimSpace(name))
		if err != nil {
			return err
		}
		on := func(ctx context.Context, cfg config, c *integration.Containerd, v integration.Version, rootfs string) error {
			if err := benchOn(ctx, cfg, c, v, rootfs); err != nil {
				return err
			}
			if err := memoryOn(ctx, cfg, c, v, rootfs); err != nil {
				return err
			}
			// The runtime-level figures need no containerd in the path:
			// once, with 2.4's runc-v2 and bootstrap protocol.
			if v.Name != "2.4" {
				return nil
			}
			return directBenchOn(ctx, cfg, c, directRuntimes(cfg, shimDir, v), rootfs)
		}
		switch {
		case cfg.soak:
			on = soakOn
		case cfg.load:
			on = loadOn
		case cfg.memory:
			on = memoryOn
		case cfg.direct:
			on = func(ctx context.Context, cfg config, c *integration.Containerd, v integration.Version, rootfs string) error {
				return directBenchOn(ctx, cfg, c, directRuntimes(cfg, shimDir, v), rootfs)
			}
		}
		if err := withContainerd(ctx, v, shimDir, func(c *integration.Containerd) error { return on(ctx, cfg, c, v, rootfs) }); err != nil {
			return err
		}
	}
	return nil
}

// floorRuntime is the shim of bench/floorshim: it runs nothing and answers
// every call at once, so what a command costs through it is containerd's
// and ctr's share alone.
const floorRuntime = "io.containerd.floor.v2"

// prepareShims makes the directory that goes first on containerd's PATH:
// our shim (cfg.shim, linked, or built) and the floor shim, built.
func prepareShims(ctx context.Context, cfg config, dir string) (string, error) {
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", err
	}
	shimDir, err := integration.ShimDir(ctx, cfg.shim, bin)
	if err != nil {
		return "", err
	}
	if shimDir != bin {
		shim := filepath.Join(shimDir, integration.ShimBinaryName(integration.MiniRuntime))
		if err := os.Symlink(shim, filepath.Join(bin, filepath.Base(shim))); err != nil {
			return "", err
		}
	}
	root, err := integration.RepoRoot()
	if err != nil {
		return "", err
	}
	floor := filepath.Join(bin, integration.ShimBinaryName(floorRuntime))
	bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	res := integration.Run(bctx, nil, []string{"CGO_ENABLED=0"}, "go", "-C", root, "build", "-trimpath", "-ldflags", "-s -w", "-o", floor, "./bench/floorshim")
	if res.ExitCode != 0 {
		return "", fmt.Errorf("build the floor shim: %s", res)
	}
	return bin, nil
}

// withContainerd runs fn against a containerd of version v of its own,
// stopped after.
func withContainerd(ctx context.Context, v integration.Version, shimDir string, fn func(c *integration.Containerd) error) (err error) {
	// Info level: debug logging in containerd and the shims costs time.
	c, err := integration.StartContainerd(ctx, integration.Options{Version: v, ShimDir: shimDir, LogLevel: "info"})
	if err != nil {
		return err
	}
	defer func() {
		if serr := c.Stop(context.Background()); serr != nil && err == nil {
			err = serr
		}
		// The namespace's cgroup parents, which containerd leaves.
		integration.RemoveNamespaceCgroups(c.Namespace)
	}()
	return fn(c)
}

// benchOn times both runtimes on c (runs, the same with specs without and
// with resources and with seccomp, execs) and measures an idle shim of
// each, then prints the table.
func benchOn(ctx context.Context, cfg config, c *integration.Containerd, v integration.Version, rootfs string) error {
	runtimes := []string{cfg.a, cfg.b}
	rs, err := prepareResources(ctx, c, v, runtimes, rootfs)
	if err != nil {
		return err
	}
	ss, err := prepareSeccomp(ctx, c, v, runtimes, rootfs)
	if err != nil {
		return err
	}
	defer ss.cleanup(ctx, c, runtimes)
	fmt.Printf("containerd %s: %d runs of `ctr run --rm --runtime R --rootfs ROOTFS ID /bin/true` per runtime, interleaved\n", v.Name, cfg.runs)
	fmt.Printf("  and with them %d runs each of `ctr run --rm --runtime R --config SPEC ID`, SPEC being the one ctr\n", cfg.runs)
	fmt.Printf("  writes for that command (no resources: only ctr's device allowlist and cpu shares) and that spec plus\n")
	fmt.Printf("  a full resources block: %s\n", rs.desc)
	for _, n := range rs.notes {
		fmt.Printf("  note: %s\n", n)
	}
	fmt.Printf("  and with containerd's default seccomp profile (what `ctr run --seccomp` writes): in a shim of its own,\n")
	fmt.Printf("  and in a shim shared with a sleeping container of the same group (%s) with the\n", groupAnnotation)
	fmt.Printf("  profile that shim compiled already (cache hit) or with one it never saw (miss)\n")

	once := func(rt string) (time.Duration, error) {
		id := fmt.Sprintf("b%s-%s", v.Tag(), integration.RandomSuffix())
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		res := c.Ctr(rctx, nil, "run", "--rm", "--runtime", rt, "--rootfs", rootfs, id, "/bin/true")
		if res.ExitCode != 0 {
			return 0, fmt.Errorf("%s on containerd %s: %s", rt, v.Name, res)
		}
		return res.Duration, nil
	}
	// Cells 0, 1: --rootfs; 2, 3: --config, no resources; 4, 5: full;
	// 6, 7: default seccomp profile; 8, 9: grouped, cache hit; 10, 11: miss.
	var cells []func() (time.Duration, error)
	for _, rt := range runtimes {
		cells = append(cells, func() (time.Duration, error) { return once(rt) })
	}
	for _, spec := range []*specs.Spec{rs.none, rs.full} {
		for _, rt := range runtimes {
			cells = append(cells, func() (time.Duration, error) { return runSpec(ctx, c, rt, spec, "/bin/true") })
		}
	}
	cells = append(cells, ss.cells(ctx, c, runtimes)...)
	// Cell 12: the floor shim.
	cells = append(cells, func() (time.Duration, error) { return once(floorRuntime) })
	times, err := interleave(cfg, cells)
	if err != nil {
		return err
	}

	execs, err := benchExec(ctx, cfg, c, v, append(runtimes, floorRuntime), rootfs)
	if err != nil {
		return err
	}

	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "\t%s\t%s\tratio a/b\t\n", label("a", cfg.a), label("b", cfg.b))
	row := func(name string, a, b float64, unit string) {
		prec := 1
		if unit == "KiB" {
			prec = 0
		}
		// A cost at or below zero (a difference lost in the noise) has no
		// meaningful ratio.
		ratio := "-"
		if a >= 0 && b > 0 {
			ratio = fmt.Sprintf("%.2f", a/b)
		}
		fmt.Fprintf(tw, "%s\t%.*f %s\t%.*f %s\t%s\t\n", name, prec, a, unit, prec, b, unit, ratio)
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	row("run median", ms(percentile(times[0], 50)), ms(percentile(times[1], 50)), "ms")
	row("run p90", ms(percentile(times[0], 90)), ms(percentile(times[1], 90)), "ms")
	row("run min", ms(percentile(times[0], 0)), ms(percentile(times[1], 0)), "ms")
	none := [2]time.Duration{percentile(times[2], 50), percentile(times[3], 50)}
	full := [2]time.Duration{percentile(times[4], 50), percentile(times[5], 50)}
	row("run --config, no resources median", ms(none[0]), ms(none[1]), "ms")
	row("run --config, full resources median", ms(full[0]), ms(full[1]), "ms")
	row("full - none (medians)", ms(full[0]-none[0]), ms(full[1]-none[1]), "ms")
	row("full - none (mins)", ms(percentile(times[4], 0)-percentile(times[2], 0)), ms(percentile(times[5], 0)-percentile(times[3], 0)), "ms")
	sec := [2]time.Duration{percentile(times[6], 50), percentile(times[7], 50)}
	row("run --config, default seccomp median", ms(sec[0]), ms(sec[1]), "ms")
	row("default seccomp - none (medians)", ms(sec[0]-none[0]), ms(sec[1]-none[1]), "ms")
	hit := [2]time.Duration{percentile(times[8], 50), percentile(times[9], 50)}
	miss := [2]time.Duration{percentile(times[10], 50), percentile(times[11], 50)}
	row("grouped, profile seen (hit) median", ms(hit[0]), ms(hit[1]), "ms")
	row("grouped, new profile (miss) median", ms(miss[0]), ms(miss[1]), "ms")
	row("miss - hit (medians)", ms(miss[0]-hit[0]), ms(miss[1]-hit[1]), "ms")
	row("exec median", ms(percentile(execs[0], 50)), ms(percentile(execs[1], 50)), "ms")
	row("exec p90", ms(percentile(execs[0], 90)), ms(percentile(execs[1], 90)), "ms")
	row("exec min", ms(percentile(execs[0], 0)), ms(percentile(execs[1], 0)), "ms")
	// The floor: the same commands through a shim that runs nothing. The
	// grouped runs (cells 8, 9: the seccomp profile's, cache hit) go to a
	// shim already running, ours and runc-v2's alike.
	for _, f := range []struct {
		what      string
		a, b      []time.Duration
		floors    []time.Duration
		showFloor bool
	}{
		{"run", times[0], times[1], times[12], true},
		{"grouped run (seccomp, hit)", times[8], times[9], times[12], false},
		{"exec", execs[0], execs[1], execs[2], true},
	} {
		fl := percentile(f.floors, 50)
		if f.showFloor {
			fmt.Fprintf(tw, "%s through the floor shim, median\t%.1f ms\t%.1f ms\t-\t\n", f.what, ms(fl), ms(fl))
		}
		row(f.what+" share above the floor (medians)", ms(percentile(f.a, 50)-fl), ms(percentile(f.b, 50)-fl), "ms")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Println()
	return nil
}

// benchExec times `ctr tasks exec --exec-id bN ID /bin/true` into one
// sleeping container per runtime (the floor shim among them: most of an
// exec's wall time is ctr and containerd, so the part a shim can change is
// what lies above it), runtimes alternating as in the run loop.
func benchExec(ctx context.Context, cfg config, c *integration.Containerd, v integration.Version, runtimes []string, rootfs string) (execs [][]time.Duration, err error) {
	ids := make([]string, len(runtimes))
	for k, rt := range runtimes {
		ids[k] = fmt.Sprintf("bexec%s-%s", v.Tag(), integration.RandomSuffix())
		defer func() {
			cctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			c.ForceCleanup(cctx, integration.ShimBinaryName(rt), ids[k])
		}()
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		res := c.Ctr(rctx, nil, "run", "--detach", "--runtime", rt, "--rootfs", rootfs, ids[k], "/bin/sleep", "100000")
		cancel()
		if res.ExitCode != 0 {
			return nil, fmt.Errorf("%s on containerd %s: %s", rt, v.Name, res)
		}
	}
	fmt.Printf("containerd %s: %d runs of `ctr tasks exec --exec-id bN ID /bin/true` per runtime, interleaved\n", v.Name, cfg.runs)
	n := 0
	exec := func(k int) (time.Duration, error) {
		n++
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		res := c.Ctr(rctx, nil, "tasks", "exec", "--exec-id", fmt.Sprintf("b%d", n), ids[k], "/bin/true")
		if res.ExitCode != 0 {
			return 0, fmt.Errorf("%s on containerd %s: %s", runtimes[k], v.Name, res)
		}
		return res.Duration, nil
	}
	var cells []func() (time.Duration, error)
	for k := range runtimes {
		cells = append(cells, func() (time.Duration, error) { return exec(k) })
	}
	return interleave(cfg, cells)
}

// interleave runs every cell once per round (see rounds); times[k] are
// cell k's measured durations.
func interleave(cfg config, cells []func() (time.Duration, error)) (times [][]time.Duration, err error) {
	times = make([][]time.Duration, len(cells))
	err = rounds(cfg, len(cells), func(k int, measured bool) error {
		d, err := cells[k]()
		if err == nil && measured {
			times[k] = append(times[k], d)
		}
		return err
	})
	return times, err
}

// rounds calls cell(k, measured) for every k < cells once per round,
// cfg.warmup rounds unmeasured and then cfg.runs measured ones, in reverse
// order every other measured round, so no cell always goes first (on a
// warmer cache) or always follows the same other one.
func rounds(cfg config, cells int, cell func(k int, measured bool) error) error {
	for i := 0; i < cfg.warmup+cfg.runs; i++ {
		measured := i >= cfg.warmup
		for j := 0; j < cells; j++ {
			k := j
			if measured && (i-cfg.warmup)%2 == 1 {
				k = cells - 1 - j
			}
			if err := cell(k, measured); err != nil {
				return err
			}
		}
	}
	return nil
}

func label(slot, runtime string) string {
	return slot + ": " + integration.ShortRuntime(runtime)
}

// idleShimMemory starts a sleeping container, lets its shim settle and reads
// the shim's smaps_rollup.
func idleShimMemory(ctx context.Context, c *integration.Containerd, v integration.Version, rt, rootfs string) (integration.MemoryUsage, error) {
	id := fmt.Sprintf("bmem%s-%s", v.Tag(), integration.RandomSuffix())
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	defer func() {
		c.ForceCleanup(rctx, integration.ShimBinaryName(rt), id)
	}()
	if res := c.Ctr(rctx, nil, "run", "--detach", "--runtime", rt, "--rootfs", rootfs, id, "/bin/sleep", "1000"); res.ExitCode != 0 {
		return integration.MemoryUsage{}, fmt.Errorf("%s on containerd %s: %s", rt, v.Name, res)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if p, ok := c.ShimProcess(rt, id); ok {
			time.Sleep(2 * time.Second)
			return integration.ReadMemoryUsage(p.Pid)
		}
		if time.Now().After(deadline) {
			return integration.MemoryUsage{}, fmt.Errorf("no %s process serving %s", integration.ShimBinaryName(rt), id)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// percentile by nearest rank; p=0 is the minimum.
func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (p*len(s) + 99) / 100
	if i > 0 {
		i--
	}
	return s[min(i, len(s)-1)]
}
