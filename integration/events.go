package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Event is one line printed by `ctr events`.
type Event struct {
	Raw       string
	Namespace string
	Topic     string
	// Payload is the decoded JSON body; exited_at is a string in 1.6 and
	// an object in 2.x, so only the stable fields are read from it.
	Payload map[string]any
}

// ContainerID is the container the event is about, if any: tasks events
// carry container_id, containers events carry id.
func (e Event) ContainerID() string {
	if s, ok := e.Payload["container_id"].(string); ok {
		return s
	}
	if strings.HasPrefix(e.Topic, "/containers/") {
		if s, ok := e.Payload["id"].(string); ok {
			return s
		}
	}
	return ""
}

// ExitStatus is the exit_status field (0 when absent, as protobuf JSON
// omits zero values).
func (e Event) ExitStatus() int {
	if f, ok := e.Payload["exit_status"].(float64); ok {
		return int(f)
	}
	return 0
}

// "2026-11-23 16:55:01.83 +0000 UTC default /tasks/exit {...}"
var eventLine = regexp.MustCompile(`^.*? UTC (\S+) (/\S+) ?(.*)$`)

// ParseEvent parses one `ctr events` line.
func ParseEvent(line string) (Event, bool) {
	m := eventLine.FindStringSubmatch(line)
	if m == nil {
		return Event{}, false
	}
	ev := Event{Raw: line, Namespace: m[1], Topic: m[2]}
	if body := strings.TrimSpace(m[3]); body != "" {
		_ = json.Unmarshal([]byte(body), &ev.Payload)
	}
	return ev, true
}

// EventWatcher runs `ctr events` against one daemon and keeps every line.
type EventWatcher struct {
	c      *Containerd
	cmd    *exec.Cmd
	mu     sync.Mutex
	events []Event
	wake   chan struct{} // closed and replaced on every new event
	done   chan struct{}
}

// WatchEvents starts `ctr events` and returns once it is subscribed: it
// creates a probe namespace and waits for its /namespaces/create event.
func (c *Containerd) WatchEvents(ctx context.Context) (*EventWatcher, error) {
	cmd := exec.Command(c.Version.CtrPath(), "--address", c.Address, "events")
	cmd.Env = append(os.Environ(), quietCtr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("ctr events: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("ctr events: %w", err)
	}
	w := &EventWatcher{c: c, cmd: cmd, wake: make(chan struct{}), done: make(chan struct{})}
	go w.read(bufio.NewScanner(out))

	probe := "probe-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		res := Run(ctx, nil, []string{quietCtr}, c.Version.CtrPath(),
			"--address", c.Address, "--namespace", probe, "namespaces", "create", probe)
		if res.ExitCode != 0 {
			w.Stop()
			return nil, fmt.Errorf("ctr events: probe: %s", res)
		}
		wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, err := w.WaitFor(wctx, func(evs []Event) bool {
			for _, e := range evs {
				if e.Topic == "/namespaces/create" && e.Payload["name"] == probe {
					return true
				}
			}
			return false
		})
		cancel()
		Run(ctx, nil, []string{quietCtr}, c.Version.CtrPath(),
			"--address", c.Address, "namespaces", "remove", probe)
		if err == nil {
			return w, nil
		}
		probe += "x"
	}
	w.Stop()
	return nil, fmt.Errorf("ctr events against containerd %s: no probe event within 20s", c.Version.Name)
}

func (w *EventWatcher) read(sc *bufio.Scanner) {
	defer close(w.done)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		ev, ok := ParseEvent(sc.Text())
		if !ok {
			continue
		}
		w.mu.Lock()
		w.events = append(w.events, ev)
		close(w.wake)
		w.wake = make(chan struct{})
		w.mu.Unlock()
	}
}

// Events returns the events seen so far that keep accepts.
func (w *EventWatcher) Events(keep func(Event) bool) []Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Event
	for _, e := range w.events {
		if keep == nil || keep(e) {
			out = append(out, e)
		}
	}
	return out
}

// WaitFor waits until done accepts all events seen so far, and returns them.
func (w *EventWatcher) WaitFor(ctx context.Context, done func([]Event) bool) ([]Event, error) {
	for {
		w.mu.Lock()
		evs := append([]Event(nil), w.events...)
		wake := w.wake
		w.mu.Unlock()
		if done(evs) {
			return evs, nil
		}
		select {
		case <-wake:
		case <-w.done:
			return evs, fmt.Errorf("ctr events exited")
		case <-ctx.Done():
			return evs, ctx.Err()
		}
	}
}

// WaitTopics waits until the task events of container id include topic
// last (e.g. /tasks/delete) and returns the /tasks/* topics in order.
func (w *EventWatcher) WaitTopics(ctx context.Context, ns, id, last string) ([]Event, error) {
	var tasks []Event
	_, err := w.WaitFor(ctx, func(all []Event) bool {
		tasks = tasks[:0]
		found := false
		for _, e := range all {
			if e.Namespace == ns && e.ContainerID() == id && strings.HasPrefix(e.Topic, "/tasks/") {
				tasks = append(tasks, e)
				found = found || e.Topic == last
			}
		}
		return found
	})
	return tasks, err
}

// Topics lists the topics of evs.
func Topics(evs []Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Topic
	}
	return out
}

// Stop ends `ctr events`.
func (w *EventWatcher) Stop() {
	if w.cmd.Process != nil {
		_ = syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
	}
	<-w.done // Wait closes the pipe; finish reading first
	_ = w.cmd.Wait()
}
