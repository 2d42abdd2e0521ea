package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/minishim/containerd-shim-mini-v2/integration"
)

// seccompSpecs are the specs of the seccomp cells: ctr's spec with
// containerd's default profile (what `ctr run --seccomp` writes), and that
// spec in a group of its own per runtime, so its containers share one shim
// (as a pod's do) with a sleeping first container.
type seccompSpecs struct {
	profile *specs.Spec
	group   [2]string
	pods    [2]string // ids of the groups' first containers
}

// groupAnnotation puts containers in one shim, with both runtimes.
const groupAnnotation = "io.containerd.runc.v2.group"

// prepareSeccomp reads containerd's default profile from a container ctr
// made with --seccomp and starts one sleeping container per runtime in a
// group of its own.
func prepareSeccomp(ctx context.Context, c *integration.Containerd, v integration.Version, runtimes []string, rootfs string) (*seccompSpecs, error) {
	spec, err := ctrSpec(ctx, c, v, runtimes[len(runtimes)-1], rootfs, "--seccomp")
	if err != nil {
		return nil, err
	}
	if spec.Linux.Seccomp == nil {
		return nil, fmt.Errorf("ctr run --seccomp on containerd %s wrote no seccomp profile", v.Name)
	}
	ss := &seccompSpecs{profile: spec}
	for k, rt := range runtimes {
		ss.group[k] = fmt.Sprintf("bgrp%s-%s", v.Tag(), integration.RandomSuffix())
		ss.pods[k] = ss.group[k] + "-pod"
		path, err := c.WriteSpec(ss.pods[k], ss.grouped(k, 0), "/bin/sleep", "100000")
		if err != nil {
			return nil, err
		}
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		res := c.Ctr(rctx, nil, "run", "--detach", "--runtime", rt, "--config", path, ss.pods[k])
		cancel()
		if res.ExitCode != 0 {
			ss.cleanup(ctx, c, runtimes)
			return nil, fmt.Errorf("%s on containerd %s: grouped container: %s", rt, v.Name, res)
		}
	}
	return ss, nil
}

// grouped is the profile spec in runtime k's group; a variant other than 0
// adds a rule that changes nothing but the profile's digest, so the shim's
// cache misses.
func (ss *seccompSpecs) grouped(k, variant int) *specs.Spec {
	data, _ := json.Marshal(ss.profile)
	s := new(specs.Spec)
	_ = json.Unmarshal(data, s) // a deep copy: it came from json
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations[groupAnnotation] = ss.group[k]
	if variant != 0 {
		errno := uint(variant%4000 + 1)
		s.Linux.Seccomp.Syscalls = append(s.Linux.Seccomp.Syscalls, specs.LinuxSyscall{
			Names: []string{"no_such_syscall_anywhere"}, Action: specs.ActErrno, ErrnoRet: &errno,
		})
	}
	return s
}

func (ss *seccompSpecs) cleanup(ctx context.Context, c *integration.Containerd, runtimes []string) {
	for k, rt := range runtimes {
		if ss.pods[k] == "" {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		c.ForceCleanup(cctx, integration.ShimBinaryName(rt), ss.pods[k])
		cancel()
		// runc-v2's group shim leaves its sockets behind.
		if err := integration.RemoveRuncGroupSockets(c, ss.group[k], log.Printf); err != nil {
			log.Print(err)
		}
	}
}

// seccompCells are, per runtime: the default profile in a shim of its own,
// and in the group's shared shim with the profile it compiled already
// (cache hit) and with one it never saw (miss).
func (ss *seccompSpecs) cells(ctx context.Context, c *integration.Containerd, runtimes []string) []func() (time.Duration, error) {
	var cells []func() (time.Duration, error)
	for _, rt := range runtimes {
		cells = append(cells, func() (time.Duration, error) { return runSpec(ctx, c, rt, ss.profile, "/bin/true") })
	}
	variant := 0
	for k, rt := range runtimes {
		cells = append(cells, func() (time.Duration, error) { return runSpec(ctx, c, rt, ss.grouped(k, 0), "/bin/true") })
	}
	for k, rt := range runtimes {
		cells = append(cells, func() (time.Duration, error) {
			variant++
			return runSpec(ctx, c, rt, ss.grouped(k, variant), "/bin/true")
		})
	}
	return cells
}
