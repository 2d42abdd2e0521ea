package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/minishim/containerd-shim-mini-v2/integration"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The full resources block of the "full resources" lifecycle variant.
const (
	memLimit       = 256 << 20
	memReservation = 128 << 20
	memSwap        = 512 << 20 // memory+swap, as OCI and cgroup v1 count it
	memSwappiness  = 10
	cpuShares      = 512
	cpuQuota       = 50000
	cpuPeriod      = 100000
	cpuMems        = "0"
	pidsLimit      = 100
	blkioWeight    = 500
)

// resourceSpecs are the two specs the --config variants run.
type resourceSpecs struct {
	none   *specs.Spec // what ctr writes for `run --rootfs ROOTFS ID /bin/true`
	full   *specs.Spec // none plus the full resources block
	checks []cgroupCheck
	desc   string   // the full block, for the header
	notes  []string // what the host made us leave out, and why
}

// cgroupCheck is one control file the full block must have set: file is
// "controller/name" on cgroup v1 and the bare name on v2; some line of it
// must equal want.
type cgroupCheck struct{ file, want string }

// prepareResources builds both specs on this daemon and checks, once per
// runtime, that a container started with the full one really has every
// value in its cgroup: a benchmark that silently applied nothing would
// measure nothing.
func prepareResources(ctx context.Context, c *integration.Containerd, v integration.Version, runtimes []string, rootfs string) (resourceSpecs, error) {
	base, err := ctrSpec(ctx, c, v, runtimes[len(runtimes)-1], rootfs)
	if err != nil {
		return resourceSpecs{}, err
	}
	_, weight := blkioWeightFile(integration.CgroupV2())
	rs := withFullResources(base, weight)
	failed, err := verifyResources(ctx, c, runtimes, rs.full, rs.checks)
	if err != nil && failed && weight {
		// A runtime that cannot write the weight file this host has (only
		// blkio.bfq.weight on v1, say) fails create: leave the weight out
		// for both, say why, and check again.
		rs = withFullResources(base, false)
		rs.notes = append(rs.notes, "blkio weight left out: with it, "+firstLine(err))
		_, err = verifyResources(ctx, c, runtimes, rs.full, rs.checks)
	}
	if err != nil {
		return resourceSpecs{}, err
	}
	names := make([]string, len(runtimes))
	for k, rt := range runtimes {
		names[k] = integration.ShortRuntime(rt)
	}
	rs.notes = append(rs.notes, fmt.Sprintf("read back from the cgroup of a detached container: %s set all %d values checked", strings.Join(names, " and "), len(rs.checks)))
	return rs, nil
}

// ctrSpec is the spec ctr writes for `ctr run [flags] --rootfs ROOTFS ID
// /bin/true`, read from the bundle of a detached container run with the
// same flags (the spec differs between ctr versions).
func ctrSpec(ctx context.Context, c *integration.Containerd, v integration.Version, rt, rootfs string, flags ...string) (*specs.Spec, error) {
	id := fmt.Sprintf("bspec%s-%s", v.Tag(), integration.RandomSuffix())
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	defer c.ForceCleanup(rctx, integration.ShimBinaryName(rt), id)
	args := append(append([]string{"run", "--detach", "--runtime", rt}, flags...), "--rootfs", rootfs, id, "/bin/sleep", "100000")
	if res := c.Ctr(rctx, nil, args...); res.ExitCode != 0 {
		return nil, fmt.Errorf("%s on containerd %s: %s", rt, v.Name, res)
	}
	data, err := os.ReadFile(filepath.Join(c.TaskDir(id), "config.json"))
	if err != nil {
		return nil, err
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("config.json of %s: %w", id, err)
	}
	if s.Process == nil || s.Linux == nil {
		return nil, fmt.Errorf("config.json of %s has no process or linux section", id)
	}
	s.Process.Args = []string{"/bin/true"}
	return &s, nil
}

// withFullResources copies base into none and, with the full block, into
// full, leaving out what this host's cgroups cannot hold (and the blkio
// weight unless weight), with the cgroup files that must then hold each
// value.
func withFullResources(base *specs.Spec, weight bool) resourceSpecs {
	data, _ := json.Marshal(base)
	full := new(specs.Spec)
	_ = json.Unmarshal(data, full) // a deep copy: it came from json
	if full.Linux.Resources == nil {
		full.Linux.Resources = &specs.LinuxResources{}
	}
	rs := resourceSpecs{none: base, full: full}
	r := full.Linux.Resources
	v2 := integration.CgroupV2()
	u64 := func(n uint64) *uint64 { return &n }
	i64 := func(n int64) *int64 { return &n }
	// check expects want in file: v1file ("controller/name") on v1,
	// v2file on v2; "" when that version has nothing to read back.
	check := func(v1file, v2file string, want any) {
		if f := map[bool]string{false: v1file, true: v2file}[v2]; f != "" {
			rs.checks = append(rs.checks, cgroupCheck{f, fmt.Sprint(want)})
		}
	}

	r.Memory = &specs.LinuxMemory{Limit: i64(memLimit), Reservation: i64(memReservation)}
	check("memory/memory.limit_in_bytes", "memory.max", memLimit)
	check("memory/memory.soft_limit_in_bytes", "memory.low", memReservation)
	desc := fmt.Sprintf("memory %dM (reservation %dM", memLimit>>20, memReservation>>20)
	if swapAccounting(v2) {
		r.Memory.Swap = i64(memSwap)
		check("memory/memory.memsw.limit_in_bytes", "", memSwap)
		check("", "memory.swap.max", memSwap-memLimit) // v2 counts swap alone
		desc += fmt.Sprintf(", memory+swap %dM", memSwap>>20)
	} else {
		rs.notes = append(rs.notes, "memory swap left out: this host does not account swap")
	}
	if !v2 {
		r.Memory.Swappiness = u64(memSwappiness)
		check("memory/memory.swappiness", "", memSwappiness)
		desc += fmt.Sprintf(", swappiness %d", memSwappiness)
	} else {
		rs.notes = append(rs.notes, "memory swappiness left out: cgroup v2 has no such knob")
	}

	cpus := "0"
	if runtime.NumCPU() >= 2 {
		cpus = "0-1"
	}
	r.CPU = &specs.LinuxCPU{Shares: u64(cpuShares), Quota: i64(cpuQuota), Period: u64(cpuPeriod), Cpus: cpus, Mems: cpuMems}
	check("cpu/cpu.shares", "", cpuShares) // v2: cpu.weight, which runtimes scale differently
	check("cpu/cpu.cfs_quota_us", "", cpuQuota)
	check("cpu/cpu.cfs_period_us", "", cpuPeriod)
	check("", "cpu.max", fmt.Sprintf("%d %d", cpuQuota, cpuPeriod))
	check("cpuset/cpuset.cpus", "cpuset.cpus", cpus)
	check("cpuset/cpuset.mems", "cpuset.mems", cpuMems)
	desc += fmt.Sprintf("), cpu shares %d, quota %d/%d, cpuset %s mems %s", cpuShares, cpuQuota, cpuPeriod, cpus, cpuMems)

	r.Pids = &specs.LinuxPids{Limit: i64(pidsLimit)}
	check("pids/pids.max", "pids.max", pidsLimit)
	desc += fmt.Sprintf(", pids %d", pidsLimit)

	if file, ok := blkioWeightFile(v2); !ok {
		rs.notes = append(rs.notes, "blkio weight left out: the host's blkio/io controller has no weight file")
	} else if weight {
		w := uint16(blkioWeight)
		r.BlockIO = &specs.LinuxBlockIO{Weight: &w}
		check("blkio/"+file, "", blkioWeight) // v2: io.weight or io.bfq.weight, scaled differently
		desc += fmt.Sprintf(", blkio weight %d", blkioWeight)
	}

	// Two device rules beyond ctr's allowlist: /dev/net/tun, and loop
	// devices read-only. v2 enforces them with eBPF: nothing to read back.
	r.Devices = append(r.Devices,
		specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: i64(10), Minor: i64(200), Access: "rwm"},
		specs.LinuxDeviceCgroup{Allow: true, Type: "b", Major: i64(7), Access: "r"},
	)
	check("devices/devices.list", "", "c 10:200 rwm")
	check("devices/devices.list", "", "b 7:* r")
	rs.desc = desc + ", 2 more device rules (c 10:200 rwm, b 7:* r)"
	return rs
}

// verifyResources starts one detached container per runtime with spec and
// reads checks back from its cgroup. failed says the error is a runtime
// that could not create the container at all.
func verifyResources(ctx context.Context, c *integration.Containerd, runtimes []string, spec *specs.Spec, checks []cgroupCheck) (failed bool, err error) {
	for _, rt := range runtimes {
		id := fmt.Sprintf("bres%s-%s", c.Version.Tag(), integration.RandomSuffix())
		path, err := c.WriteSpec(id, spec, "/bin/sleep", "100000")
		if err != nil {
			return false, err
		}
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		res := c.Ctr(rctx, nil, "run", "--detach", "--runtime", rt, "--config", path, id)
		if failed = res.ExitCode != 0; failed {
			err = fmt.Errorf("%s could not create a container with the full resources block: %s\n%s", integration.ShortRuntime(rt), strings.TrimSpace(res.Stderr), res)
		} else if err = readBack(c.CgroupsPath(id), checks); err != nil {
			err = fmt.Errorf("%s did not apply the full resources block:\n%w", integration.ShortRuntime(rt), err)
		}
		c.ForceCleanup(rctx, integration.ShimBinaryName(rt), id)
		cancel()
		os.Remove(path)
		if err != nil {
			return failed, err
		}
	}
	return false, nil
}

func readBack(cgroupsPath string, checks []cgroupCheck) error {
	var wrong []string
	for _, ck := range checks {
		p := filepath.Join("/sys/fs/cgroup", cgroupsPath, ck.file)
		if ctrl, name, ok := strings.Cut(ck.file, "/"); ok {
			p = filepath.Join("/sys/fs/cgroup", ctrl, cgroupsPath, name)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			wrong = append(wrong, err.Error())
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if !slices.Contains(lines, ck.want) {
			wrong = append(wrong, fmt.Sprintf("%s is %q, want %q", p, strings.Join(lines, "; "), ck.want))
		}
	}
	if len(wrong) > 0 {
		return fmt.Errorf("%s", strings.Join(wrong, "\n"))
	}
	return nil
}

// runSpec times `ctr run --rm --runtime rt --config SPEC ID`, SPEC being
// spec with args and the cgroup path ctr would give ID; writing it is not
// timed.
func runSpec(ctx context.Context, c *integration.Containerd, rt string, spec *specs.Spec, args ...string) (time.Duration, error) {
	id := fmt.Sprintf("bc%s-%s", c.Version.Tag(), integration.RandomSuffix())
	path, err := c.WriteSpec(id, spec, args...)
	if err != nil {
		return 0, err
	}
	defer os.Remove(path)
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	res := c.Ctr(rctx, nil, "run", "--rm", "--runtime", rt, "--config", path, id)
	if res.ExitCode != 0 {
		return 0, fmt.Errorf("%s on containerd %s: %s", rt, c.Version.Name, res)
	}
	return res.Duration, nil
}

// swapAccounting: memory.memsw.* on v1 (the root has them when the kernel
// accounts swap); memory.swap.max on v2, which only child cgroups show.
func swapAccounting(v2 bool) bool {
	if !v2 {
		_, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
		return err == nil
	}
	_, ok := probeCgroupFile("/sys/fs/cgroup", "memory.swap.max")
	return ok
}

// blkioWeightFile names the weight file a child cgroup has: blkio.weight
// (CFQ) or blkio.bfq.weight (BFQ) on v1, io.weight or io.bfq.weight on v2.
// The root never has them, so this looks in a throwaway child.
func blkioWeightFile(v2 bool) (string, bool) {
	if v2 {
		return probeCgroupFile("/sys/fs/cgroup", "io.weight", "io.bfq.weight")
	}
	return probeCgroupFile("/sys/fs/cgroup/blkio", "blkio.weight", "blkio.bfq.weight")
}

// probeCgroupFile makes a child cgroup of root and returns the first of
// names it has.
func probeCgroupFile(root string, names ...string) (string, bool) {
	dir := filepath.Join(root, "mini-bench-probe-"+integration.RandomSuffix())
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", false
	}
	defer os.Remove(dir)
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			return n, true
		}
	}
	return "", false
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
