package linux

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/errdefs"
)

// kernelDelegateList is where the kernel lists the files of a cgroup v2
// directory that a delegatee may own (Linux 4.15).
const kernelDelegateList = "/sys/kernel/cgroup/delegate"

// delegateContainerCgroup hands the cgroup of the container whose init is
// initPid to the host uid of its process user uid; mine says which of the
// cgroup's processes are the container's. Only on cgroup v2: on
// v1 (and beside v1, in a hybrid host's unified hierarchy) there is
// nothing to hand, as with runc.
func delegateContainerCgroup(cg Cgroup, initPid int, uid uint32, mine func(pid int) bool) error {
	if cgroups.Mode() != cgroups.Unified {
		return nil
	}
	// A cgroup other processes share (one cgroupsPath for several
	// containers) is not this container's to hand over: its root could
	// move the others' processes.
	pids, err := cg.Pids()
	if err != nil {
		return fmt.Errorf("cgroup delegation: %w", err)
	}
	for _, p := range pids {
		if !mine(p) {
			return fmt.Errorf("cgroup delegation (asked for by a cgroup namespace and a read-write /sys/fs/cgroup): cgroup %s holds process %d, which is not this container's: %w", cg.Path(), p, errdefs.ErrFailedPrecondition)
		}
	}
	owner, err := cgroupDelegateOwner(initPid, uid)
	if err == nil {
		err = delegateCgroup(filepath.Join(cgroupRoot, cg.Path()), owner, kernelDelegateList)
	}
	if err != nil {
		return fmt.Errorf("cgroup delegation (asked for by a cgroup namespace and a read-write /sys/fs/cgroup): %w", err)
	}
	return nil
}

// cgroupDelegateOwner is the host uid that the container's process user
// (uid, inside the container) is, read from init's uid_map: right for a
// new user namespace, a joined one, and none (the identity map).
func cgroupDelegateOwner(initPid int, uid uint32) (int, error) {
	ranges, err := readIDMap(strconv.Itoa(initPid), "uid_map")
	if err != nil {
		return 0, fmt.Errorf("init's uid_map: %w", err)
	}
	host, ok := hostID(ranges, uid)
	if !ok {
		return 0, fmt.Errorf("process.user.uid %d is not mapped in the container's user namespace", uid)
	}
	return int(host), nil
}

// delegateCgroup hands the cgroup directory dir and the files listed in
// list (cgroups(7)'s cgroup.procs, cgroup.subtree_control and
// cgroup.threads where the kernel has no list) to uid; their group stays.
// Files a kernel lists but this cgroup lacks are skipped. Limits (memory.max
// and the like) stay root's: the delegatee distributes what it was given.
func delegateCgroup(dir string, uid int, list string) error {
	files, err := delegatableFiles(list)
	if err != nil {
		return err
	}
	if err := os.Lchown(dir, uid, -1); err != nil {
		return fmt.Errorf("hand cgroup %s to uid %d: %w", dir, uid, err)
	}
	for _, f := range files {
		err := os.Lchown(filepath.Join(dir, f), uid, -1)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("hand cgroup %s to uid %d: %w", dir, uid, err)
		}
	}
	return nil
}

// delegatableFiles reads the kernel's list: one file name per line.
func delegatableFiles(list string) ([]string, error) {
	f, err := os.Open(list)
	if errors.Is(err, os.ErrNotExist) {
		return []string{"cgroup.procs", "cgroup.subtree_control", "cgroup.threads"}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", list, err)
	}
	defer f.Close()
	var files []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		name := strings.TrimSpace(s.Text())
		// Names only: the list is the kernel's, but a path in it must
		// not lead the chown out of the cgroup.
		if name == "" || strings.ContainsRune(name, '/') || name == "." || name == ".." {
			continue
		}
		files = append(files, name)
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", list, err)
	}
	return files, nil
}
