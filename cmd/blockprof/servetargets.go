package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"blockprof/internal/engine"
)

// scanner finds serve's targets as they appear: processes whose comm
// matches --comm, and those in --cgroup's tree. It polls /proc or the
// cgroups' cgroup.procs and hands new PIDs to the recording. A PID is
// forgotten when its process is gone, so a later process reusing it is
// added again.
type scanner struct {
	comm   *regexp.Regexp
	cgroup string
	self   int
	seen   map[int]bool
	stats  *serveStats
	warn   func(string)
	warned bool
}

func (s *scanner) run(ctx context.Context, rec *engine.Recording, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-rec.Done():
			return
		case <-t.C:
			s.scan(rec)
		}
	}
}

// scan adds the targets found since the last scan.
func (s *scanner) scan(rec *engine.Recording) {
	var found []int
	if s.comm != nil {
		found = append(found, scanComm(s.comm, s.self)...)
	}
	if s.cgroup != "" {
		pids, err := scanCgroup(s.cgroup)
		if err != nil && !s.warned {
			s.warn(fmt.Sprintf("warning: cgroup %s: %v", s.cgroup, err))
			s.warned = true
		}
		for _, p := range pids {
			if p != s.self {
				found = append(found, p)
			}
		}
	}
	live := map[int]bool{}
	var add []int
	for _, p := range found {
		live[p] = true
		if !s.seen[p] {
			s.seen[p] = true
			add = append(add, p)
		}
	}
	for p := range s.seen {
		if !live[p] && !processExists(p) {
			delete(s.seen, p)
		}
	}
	if len(add) == 0 {
		return
	}
	if err := rec.AddTargets(add); err != nil && err != engine.ErrEnded {
		s.warn(fmt.Sprintf("warning: %v", err)) // a process that exited meanwhile, usually
	}
	s.stats.addTargets(len(add))
}

// scanComm lists user processes (not kernel threads, not self) whose
// comm matches re.
func scanComm(re *regexp.Regexp, self int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		st, ok := readStat(pid)
		if !ok || st.flags&pfKthread != 0 || !re.MatchString(st.comm) {
			continue
		}
		out = append(out, pid)
	}
	return out
}

// maxCgroups bounds the walk of a cgroup tree.
const maxCgroups = 4096

// scanCgroup lists the processes of cgroup v2 directory dir and of its
// sub-cgroups (a pod's containers, a slice's services).
func scanCgroup(dir string) ([]int, error) {
	var out []int
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == dir {
				return err
			}
			return nil // a cgroup removed under our feet
		}
		if !d.IsDir() {
			return nil
		}
		if n++; n > maxCgroups {
			return filepath.SkipAll
		}
		b, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
		if err != nil {
			return nil
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
				out = append(out, pid)
			}
		}
		return nil
	})
	return out, err
}
