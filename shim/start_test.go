package shim

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bootstrapapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// TestStartLaunchesDaemon runs `start` for real: it launches this test
// binary as the daemon (see TestMain), then stops it with SIGTERM.
func TestStartLaunchesDaemon(t *testing.T) {
	t.Setenv(daemonTestEnv, "1")
	// A race-enabled binary otherwise lingers a second at exit.
	t.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	tests := []struct {
		name      string
		bootstrap bool
	}{
		{name: "plain address for containerd before 2.3"},
		{name: "bootstrap result for containerd 2.3+", bootstrap: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Short: the socket path must stay under 106 bytes.
			sockDir, err := os.MkdirTemp("/tmp", "shs")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(sockDir) })
			bundle := t.TempDir()
			logs := openTestLogFifo(t, filepath.Join(bundle, shimLogFifoName))

			o := &options{namespace: "testns", id: "c1", address: "/test/containerd.sock", bundle: bundle}
			var stdin []byte
			if tt.bootstrap {
				stdin, err = proto.Marshal(&bootstrapapi.BootstrapParams{
					InstanceID:            "c1",
					Namespace:             "testns",
					ContainerdGrpcAddress: "/test/containerd.sock",
					SocketDir:             &sockDir,
				})
				if err != nil {
					t.Fatal(err)
				}
			} else {
				o.address = "/test/containerd-" + filepath.Base(sockDir) + ".sock"
			}

			var out bytes.Buffer
			if err := runStart(context.Background(), o, bytes.NewReader(stdin), &out); err != nil {
				t.Fatalf("start: %v", err)
			}
			pid := readPidFile(t, filepath.Join(bundle, shimPidFileName))
			t.Cleanup(func() { stopDaemon(t, pid) })

			address := decodeStartOutput(t, out.Bytes(), tt.bootstrap)
			if !strings.HasPrefix(address, "unix://") {
				t.Fatalf("address %q", address)
			}
			if tt.bootstrap && !strings.HasPrefix(address, "unix://"+sockDir+"/") {
				t.Fatalf("address %q ignores socket dir %s", address, sockDir)
			}
			if b, _ := os.ReadFile(filepath.Join(bundle, addressFileName)); string(b) != address {
				t.Fatalf("address file %q, want %q", b, address)
			}
			c, err := net.Dial("unix", socketPathOf(address))
			if err != nil {
				t.Fatalf("daemon not reachable: %v", err)
			}
			c.Close()
			logs.expect(t, "serving")

			// A second start for the same group finds the running shim.
			out.Reset()
			if err := runStart(context.Background(), o, bytes.NewReader(stdin), &out); err != nil {
				t.Fatalf("second start: %v", err)
			}
			if again := decodeStartOutput(t, out.Bytes(), tt.bootstrap); again != address {
				t.Fatalf("second start answered %q, want %q", again, address)
			}

			stopDaemon(t, pid)
			if _, err := os.Stat(socketPathOf(address)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("socket left after the daemon stopped: %v", err)
			}
		})
	}
}

func decodeStartOutput(t *testing.T, out []byte, bootstrap bool) string {
	t.Helper()
	if !bootstrap {
		return string(out)
	}
	var res bootstrapapi.BootstrapResult
	if err := proto.Unmarshal(out, &res); err != nil {
		t.Fatalf("start output is no BootstrapResult: %v", err)
	}
	if res.GetVersion() != 3 || res.GetProtocol() != "ttrpc" {
		t.Fatalf("result %v", &res)
	}
	return res.GetAddress()
}

func readPidFile(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(string(b))
	if err != nil {
		t.Fatalf("pid file %q: %v", b, err)
	}
	return pid
}

// stopDaemon sends SIGTERM and reaps the daemon, a child of the test.
func stopDaemon(t *testing.T, pid int) {
	t.Helper()
	if err := unix.Kill(pid, unix.SIGTERM); err != nil {
		return // already stopped and reaped
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ws unix.WaitStatus
		unix.Wait4(pid, &ws, 0, nil)
	}()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		unix.Kill(pid, unix.SIGKILL)
		<-done
		t.Fatal("daemon ignored SIGTERM")
	}
}

type testLogs struct{ lines chan string }

// openTestLogFifo plays containerd's part: it makes the log fifo and reads
// it.
func openTestLogFifo(t *testing.T, path string) *testLogs {
	t.Helper()
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	// Read-write: a reader alone would see EOF until the daemon opens it.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	l := &testLogs{lines: make(chan string, 100)}
	go func() {
		s := bufio.NewScanner(f)
		for s.Scan() {
			select {
			case l.lines <- s.Text():
			default:
			}
		}
	}()
	return l
}

func (l *testLogs) expect(t *testing.T, substr string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case line := <-l.lines:
			if strings.Contains(line, substr) {
				return
			}
		case <-deadline:
			t.Fatalf("no log line with %q", substr)
		}
	}
}
