package initproc

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// FuzzMountOptions: option lists never panic the parsers, and the flags
// they give stay within what mount(2) and mount_setattr(2) define.
func FuzzMountOptions(f *testing.F) {
	f.Add("rbind,ro,rro,rshared,nosuid,size=65536k,idmap,tmpcopyup")
	f.Add("rw,rrw,rnoatime,rstrictatime,private,nosymfollow")
	f.Fuzz(func(t *testing.T, list string) {
		opts := splitOptionList(list)
		kept, attr, err := splitRecursiveOptions(opts)
		if err != nil {
			if !errdefs.IsNotImplemented(err) {
				t.Fatalf("splitRecursiveOptions: unclassed error %v", err)
			}
			return
		}
		flags, propagation, _ := ParseMountOptions(kept)
		if flags&^allMountFlags != 0 {
			t.Fatalf("flags %#x beyond the known ones", flags)
		}
		for _, p := range propagation {
			if p&^(propagationMask) != 0 {
				t.Fatalf("propagation %#x is not one", p)
			}
		}
		if attr != nil && attr.Attr_set&attr.Attr_clr&^uint64(0x70) != 0 {
			t.Fatalf("attributes set and cleared at once: %+v", attr)
		}
	})
}

// splitOptionList is a fuzzed option list as a spec's options array.
func splitOptionList(list string) []string { return strings.Split(list, ",") }

// allMountFlags are the flags an option may set.
var allMountFlags = func() uintptr {
	var all uintptr
	for _, f := range flagOptions {
		all |= f.flag
	}
	return all
}()

// propagationMask holds every propagation flag and MS_REC.
const propagationMask = unix.MS_PRIVATE | unix.MS_SHARED | unix.MS_SLAVE | unix.MS_UNBINDABLE | unix.MS_REC
