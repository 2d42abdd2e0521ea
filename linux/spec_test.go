package linux

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestSpecLoad(t *testing.T) {
	const good = `{"ociVersion":"1.0.2","process":{"args":["/bin/true"],"cwd":"/"},"root":{"path":"rootfs"},
		"linux":{"namespaces":[{"type":"mount"},{"type":"pid"}]}}`
	const idmap = `{"containerID":0,"hostID":100000,"size":65536}`
	// userns is good with a new user namespace and these mappings.
	userns := func(uid, gid string) string {
		maps := ``
		if uid != "" {
			maps = `"uidMappings":[` + uid + `],"gidMappings":[` + gid + `],`
		}
		return strings.Replace(strings.Replace(good, `{"type":"pid"}`, `{"type":"pid"},{"type":"user"}`, 1), `"namespaces"`, maps+`"namespaces"`, 1)
	}
	// timens is good with this time namespace entry and these offsets.
	timens := func(ns, offsets string) string {
		if ns != "" {
			ns = "," + ns
		}
		return strings.Replace(strings.Replace(good, `{"type":"pid"}`, `{"type":"pid"}`+ns, 1), `"namespaces"`, `"timeOffsets":`+offsets+`,"namespaces"`, 1)
	}
	tests := []struct {
		name    string
		config  *string // nil: no config.json
		class   func(error) bool
		wantErr string
	}{
		{name: "missing", class: errdefs.IsNotFound, wantErr: "config.json"},
		{name: "not json", config: ptr("{nope"), class: errdefs.IsInvalidArgument, wantErr: "not a valid runtime spec"},
		{name: "no process", config: ptr(`{"root":{"path":"r"},"linux":{}}`), class: errdefs.IsInvalidArgument, wantErr: "process is missing"},
		{name: "empty args", config: ptr(strings.Replace(good, `["/bin/true"]`, `[]`, 1)), class: errdefs.IsInvalidArgument, wantErr: "process.args is empty"},
		{name: "relative cwd", config: ptr(strings.Replace(good, `"cwd":"/"`, `"cwd":"x"`, 1)), class: errdefs.IsInvalidArgument, wantErr: "process.cwd"},
		{name: "no mount ns", config: ptr(strings.Replace(good, `{"type":"mount"},`, ``, 1)), class: errdefs.IsInvalidArgument, wantErr: "mount namespace"},
		{name: "user ns without maps", config: ptr(userns(``, ``)), class: errdefs.IsInvalidArgument, wantErr: "needs both linux.uidMappings and linux.gidMappings"},
		{name: "maps without user ns", config: ptr(strings.Replace(good, `"namespaces"`, `"uidMappings":[`+idmap+`],"namespaces"`, 1)), class: errdefs.IsInvalidArgument, wantErr: "has no user namespace"},
		{name: "user ns", config: ptr(userns(idmap, idmap))},
		{name: "user ns two ranges", config: ptr(userns(idmap+`,{"containerID":70000,"hostID":300000,"size":10}`, idmap))},
		{name: "overlapping maps", config: ptr(userns(idmap+`,{"containerID":10,"hostID":300000,"size":10}`, idmap)), class: errdefs.IsInvalidArgument, wantErr: "linux.uidMappings: [0] and [1] overlap in containerID"},
		{name: "overlapping host ids", config: ptr(userns(idmap, idmap+`,{"containerID":70000,"hostID":100010,"size":10}`)), class: errdefs.IsInvalidArgument, wantErr: "linux.gidMappings: [0] and [1] overlap in hostID"},
		{name: "oversized map", config: ptr(userns(`{"containerID":1,"hostID":100000,"size":4294967295}`, idmap)), class: errdefs.IsInvalidArgument, wantErr: "goes past the last id"},
		{name: "empty range", config: ptr(userns(`{"containerID":0,"hostID":100000,"size":0}`, idmap)), class: errdefs.IsInvalidArgument, wantErr: "size 0"},
		{name: "root unmapped", config: ptr(userns(`{"containerID":1,"hostID":100000,"size":65536}`, idmap)), class: errdefs.IsInvalidArgument, wantErr: "linux.uidMappings does not map id 0"},
		{name: "process user unmapped", config: ptr(strings.Replace(userns(idmap, idmap), `"cwd":"/"`, `"cwd":"/","user":{"uid":70000,"gid":0}`, 1)), class: errdefs.IsInvalidArgument, wantErr: "user.uid 70000 is not mapped"},
		{name: "process group unmapped", config: ptr(strings.Replace(userns(idmap, idmap), `"cwd":"/"`, `"cwd":"/","user":{"uid":0,"gid":0,"additionalGids":[70001]}`, 1)), class: errdefs.IsInvalidArgument, wantErr: "gid 70001"},
		{name: "user path of another type", config: ptr(strings.Replace(good, `{"type":"pid"}`, `{"type":"user","path":"/proc/self/ns/net"}`, 1)), class: errdefs.IsInvalidArgument, wantErr: "a namespace of another type"},
		{name: "user path not a namespace", config: ptr(strings.Replace(good, `{"type":"pid"}`, `{"type":"user","path":"/proc/self/status"}`, 1)), class: errdefs.IsInvalidArgument, wantErr: "is not a namespace file"},
		{name: "joined user ns, other maps", config: ptr(strings.Replace(strings.Replace(good, `"namespaces"`, `"uidMappings":[`+idmap+`],"namespaces"`, 1), `{"type":"pid"}`, `{"type":"user","path":"/proc/self/ns/user"}`, 1)), class: errdefs.IsInvalidArgument, wantErr: "differ from the mappings of the joined user namespace"},
		{name: "joined user ns, same maps", config: ptr(strings.Replace(strings.Replace(good, `"namespaces"`, `"uidMappings":[{"containerID":0,"hostID":0,"size":4294967295}],"namespaces"`, 1), `{"type":"pid"}`, `{"type":"user","path":"/proc/self/ns/user"}`, 1))},
		{name: "time ns", config: ptr(timens(`{"type":"time"}`, `{"monotonic":{"secs":-5},"boottime":{"secs":86400,"nanosecs":5}}`))},
		{name: "offsets without time ns", config: ptr(timens(``, `{"monotonic":{"secs":5}}`)), class: errdefs.IsInvalidArgument, wantErr: "linux.timeOffsets: set, but linux.namespaces has no time namespace"},
		{name: "offsets on joined time ns", config: ptr(timens(`{"type":"time","path":"/proc/self/ns/time"}`, `{"monotonic":{"secs":5}}`)), class: errdefs.IsInvalidArgument, wantErr: "joined by path"},
		{name: "offset of a clock without one", config: ptr(timens(`{"type":"time"}`, `{"realtime":{"secs":5}}`)), class: errdefs.IsInvalidArgument, wantErr: `clock "realtime" has no offset`},
		{name: "offset nanosecs", config: ptr(timens(`{"type":"time"}`, `{"boottime":{"nanosecs":1000000000}}`)), class: errdefs.IsInvalidArgument, wantErr: "nanosecs"},
		{name: "unknown ns", config: ptr(strings.Replace(good, `{"type":"pid"}`, `{"type":"bogus"}`, 1)), class: errdefs.IsInvalidArgument, wantErr: "bogus"},
		{name: "missing ns path", config: ptr(strings.Replace(good, `{"type":"pid"}`, `{"type":"network","path":"/proc/0/ns/net"}`, 1)), class: errdefs.IsNotFound, wantErr: "/proc/0/ns/net"},
		{name: "hostname without uts", config: ptr(strings.Replace(good, `"root"`, `"hostname":"h","root"`, 1)), class: errdefs.IsInvalidArgument, wantErr: "UTS"},
		{name: "cgroup escape", config: ptr(strings.Replace(good, `"namespaces"`, `"cgroupsPath":"/a/../../b","namespaces"`, 1)), class: errdefs.IsInvalidArgument, wantErr: "escapes"},
		{name: "good", config: ptr(good)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.config != nil {
				if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(*tt.config), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			spec, err := LoadSpec(dir)
			if tt.class == nil {
				if err != nil {
					t.Fatalf("LoadSpec: %v", err)
				}
				if got := RootfsPath(spec, dir); got != filepath.Join(dir, "rootfs") {
					t.Errorf("RootfsPath = %s", got)
				}
				return
			}
			if err == nil || !tt.class(err) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("LoadSpec error = %v; want class match and %q", err, tt.wantErr)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestSpecBootstrap(t *testing.T) {
	ns := namespaces{
		unshare:     0x20000,
		join:        []nsJoin{{flag: 0x40000000, path: "/proc/1/ns/net"}},
		timeOffsets: map[string]specs.LinuxTimeOffset{"monotonic": {Secs: -5}, "boottime": {Secs: 7, Nanosecs: 3}},
	}
	if got, want := string(ns.bootstrap()), "unshare 131072\njoin 1073741824 /proc/1/ns/net\ntimens boottime 7 3\ntimens monotonic -5 0\n"; got != want {
		t.Errorf("bootstrap = %q; want %q", got, want)
	}
}

func TestSpecShimGroup(t *testing.T) {
	tests := []struct {
		name   string
		config string // "" means no config.json
		mode   string
		want   Group
		bad    bool
	}{
		{name: "no config", want: Group{Name: "c1"}},
		{name: "no annotations", config: `{"ociVersion":"1.0.2"}`, want: Group{Name: "c1"}},
		{name: "sandbox id", config: `{"annotations":{"io.kubernetes.cri.sandbox-id":"pod"}}`, want: Group{Name: "pod"}},
		{name: "explicit group wins", config: `{"annotations":{"io.kubernetes.cri.sandbox-id":"pod","io.containerd.runc.v2.group":"g"}}`, want: Group{Name: "g"}},
		{name: "pod mode", config: `{"annotations":{"io.kubernetes.cri.sandbox-id":"pod"}}`, mode: "pod", want: Group{Name: "pod"}},
		{name: "namespace mode", config: `{"annotations":{"io.kubernetes.cri.sandbox-id":"pod"}}`, mode: "namespace", want: Group{Name: "mini:namespace"}},
		{name: "node mode, no config", mode: "node", want: Group{Name: "mini:node", AllNamespaces: true}},
		{name: "annotation wins", config: `{"annotations":{"io.containerd.mini.v2.shim-group":"namespace"}}`, mode: "node", want: Group{Name: "mini:namespace"}},
		{name: "annotation back to pod", config: `{"annotations":{"io.containerd.mini.v2.shim-group":"pod"}}`, mode: "node", want: Group{Name: "c1"}},
		{name: "bad annotation", config: `{"annotations":{"io.containerd.mini.v2.shim-group":"rack"}}`, bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.config != "" {
				if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(tt.config), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := ShimGroup(dir, "c1", tt.mode)
			if tt.bad {
				if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), ShimGroupAnnotation) {
					t.Fatalf("got %+v, %v; want InvalidArgument naming the annotation", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("group = %+v, want %+v", got, tt.want)
			}
		})
	}
}
