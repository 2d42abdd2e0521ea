package linux

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A process started from a thread that joined a v1 cgroup is born in every
// hierarchy of it (and, on a hybrid host, in its unified cgroup); the
// shim's own threads are all out again once the start returns. Where the
// cgroup is frozen, or must be empty and is not, nothing is started and
// the caller moves the process instead.
func TestStartInCgroupThread(t *testing.T) {
	requireCgroupV1(t)
	path := "/minitest-unit/thread-" + strconv.Itoa(os.Getpid())
	cg, err := newCgroupfs(path, &specs.LinuxResources{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cg.Delete(); err != nil {
			t.Error(err)
		}
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*/minitest-unit")
		for _, d := range append(dirs, "/sys/fs/cgroup/unified/minitest-unit") {
			if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
				t.Error(err)
			}
		}
	})
	v1 := cg.(*cgroupV1)
	tp := v1.threadPlacement()
	var started []*exec.Cmd
	start := func(cmd *exec.Cmd) (<-chan int, error) {
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		started = append(started, cmd)
		return make(chan int), nil
	}
	t.Cleanup(func() {
		for _, c := range started {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	})
	sleeper := func() *exec.Cmd { return exec.Command("/bin/sleep", "100") }

	if _, err := startInCgroupThread(sleeper(), tp, nil, true, start); err != nil {
		t.Fatalf("start in an empty, thawed cgroup: %v", err)
	}
	child := started[0].Process.Pid
	want := 0
	for _, line := range readLines(t, "/proc/"+strconv.Itoa(child)+"/cgroup") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 || f[1] == "" && cgroups.Mode() != cgroups.Hybrid {
			continue
		}
		if f[1] == "net_cls,net_prio" || f[1] == "rdma" || f[1] == "misc" {
			continue // not among containerd/cgroups' hierarchies
		}
		want++
		if f[2] != path {
			t.Errorf("child %d is in %s %q, want %s", child, f[1], f[2], path)
		}
	}
	if want == 0 {
		t.Fatal("read no hierarchy of the child")
	}
	// Only the child is there: no thread of this process stayed.
	for _, h := range tp.hierarchies {
		if tasks := readLines(t, filepath.Join(h.root, path, "tasks")); len(tasks) != 1 || tasks[0] != strconv.Itoa(child) {
			t.Errorf("%s tasks = %v, want only the child %d", h.name, tasks, child)
		}
	}
	if pids, err := cg.Pids(); err != nil || len(pids) != 1 || pids[0] != child {
		t.Errorf("Pids = %v, %v; want [%d]", pids, err, child)
	}

	// Not empty any more.
	if _, err := startInCgroupThread(sleeper(), tp, nil, true, start); !errors.Is(err, errNotFromThread) {
		t.Errorf("start into a cgroup that must be empty and is not: %v, want errNotFromThread", err)
	}
	// Frozen: never from a thread.
	if err := cg.Freeze(); err != nil {
		t.Fatal(err)
	}
	_, err = startInCgroupThread(sleeper(), tp, nil, false, start)
	if terr := cg.Thaw(); terr != nil {
		t.Fatal(terr)
	}
	if !errors.Is(err, errNotFromThread) {
		t.Errorf("start into a frozen cgroup: %v, want errNotFromThread", err)
	}
	// Thawed and not required empty: a second process joins.
	if _, err := startInCgroupThread(sleeper(), tp, nil, false, start); err != nil {
		t.Fatalf("second start: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids, err := cg.Pids()
		if err == nil && len(pids) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Pids = %v, %v; want the two children", pids, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(strings.TrimSpace(string(data)))
}
