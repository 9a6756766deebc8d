package engine

import (
	"fmt"
	"strings"

	"blockprof/internal/procmaps"
)

// execMappings is the signature of a process's executable mappings: the
// lines of /proc/PID/maps with code in them. Tables are (re)loaded when it
// changes (the dynamic loader mapping libraries after exec, dlopen).
func execMappings(pid uint32) (string, bool) {
	maps, err := procmaps.Read(int(pid))
	if err != nil {
		return "", false
	}
	var sig strings.Builder
	for _, m := range maps {
		if m.Exec() {
			fmt.Fprintf(&sig, "%x-%x %x %d %s %t\n", m.Start, m.End, m.Offset, m.Inode, m.Path, m.Deleted)
		}
	}
	return sig.String(), true
}

// loadUnwind gives the kernel's unwinder the tables of tgid's code, if its
// mappings changed since the last time. Until then its stacks are walked
// with frame pointers; a failure is reported once and leaves it so.
func (r *recorder) loadUnwind(tgid uint32) {
	if !r.cfg.Unwind {
		return
	}
	sig, ok := execMappings(tgid)
	if !ok || sig == r.unwSig[tgid] {
		return
	}
	r.unwSig[tgid] = sig
	if err := r.src.AddUnwind(int(tgid)); err != nil && !r.unwWarned {
		r.unwWarned = true
		r.warn("unwind tables for pid %d: %v (frame pointers only)", tgid, err)
	}
}

// refreshUnwind reloads tables for live targets whose code changed.
func (r *recorder) refreshUnwind() {
	for tgid, p := range r.procs {
		if p != nil && !p.Exited() {
			r.loadUnwind(tgid)
		}
	}
}
