// Package locks names who holds the lock a blocked thread waits for, where
// the lock's own memory records it, and finds wait cycles (deadlocks).
// It never guesses: a futex word that is not a locked glibc mutex whose
// recorded owner is a live thread of the same process has no known holder.
package locks

import (
	"encoding/binary"
	"fmt"
	"os"
	"slices"
)

// glibc's struct __pthread_mutex_s on 64-bit Linux (sysdeps/nptl/
// bits/struct_mutex.h): the futex word first, the owner's tid at +8.
const (
	offLock   = 0  // int __lock: 0 unlocked, 1 locked, 2 locked with waiters
	offOwner  = 8  // int __owner: tid of the holder
	offNusers = 12 // unsigned __nusers
	offKind   = 16 // int __kind: PTHREAD_MUTEX_{TIMED,RECURSIVE,ERRORCHECK,ADAPTIVE}_NP, plus flag bits
	mutexSize = 20
	// __kind flag bits (nptl/pthreadP.h): robust, priority inherit and
	// protect, and "elision" variants; the type is what remains.
	kindFlags = 16 | 32 | 64 | 256 | 512
)

// MutexOwner returns the thread of process pid that holds the glibc
// pthread mutex whose futex word is at addr, as the mutex itself records
// it. ok is false when the memory there is not such a mutex held by
// another live thread of pid (a semaphore, a condition variable, Python's
// or Go's own locks): then nothing is known, and nothing is said.
func MutexOwner(pid, waiter int, addr uint64) (owner int, ok bool) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var b [mutexSize]byte
	if _, err := f.ReadAt(b[:], int64(addr)); err != nil {
		return 0, false
	}
	return ownerOf(b[:], waiter, func(tid int) bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d/task/%d", pid, tid))
		return err == nil
	})
}

// ownerOf decides from a mutex's bytes (see MutexOwner); isThread says
// whether a tid is a live thread of the process.
func ownerOf(b []byte, waiter int, isThread func(int) bool) (int, bool) {
	if len(b) < mutexSize {
		return 0, false
	}
	lock := int32(binary.LittleEndian.Uint32(b[offLock:]))
	owner := int32(binary.LittleEndian.Uint32(b[offOwner:]))
	nusers := binary.LittleEndian.Uint32(b[offNusers:])
	kind := int32(binary.LittleEndian.Uint32(b[offKind:]))
	switch {
	case lock == 0, owner <= 0, int(owner) == waiter, nusers == 0:
		return 0, false
	case kind < 0 || kind&^kindFlags > 3:
		return 0, false
	case !isThread(int(owner)):
		return 0, false
	}
	return int(owner), true
}

// Cycles returns the wait cycles in waitsFor (a thread -> the thread that
// holds what it waits for), each once, starting at its smallest tid,
// smallest first.
func Cycles(waitsFor map[int]int) [][]int {
	var out [][]int
	seen := map[int]bool{}
	tids := make([]int, 0, len(waitsFor))
	for t := range waitsFor {
		tids = append(tids, t)
	}
	slices.Sort(tids)
	for _, start := range tids {
		if seen[start] {
			continue
		}
		// Follow the chain from start; a thread met twice closes a cycle.
		pos := map[int]int{}
		var path []int
		for t, ok := start, true; ok && !seen[t]; t, ok = waitsFor[t] {
			if i, again := pos[t]; again {
				cyc := slices.Clone(path[i:])
				m := slices.Index(cyc, slices.Min(cyc))
				out = append(out, append(cyc[m:], cyc[:m]...))
				break
			}
			pos[t] = len(path)
			path = append(path, t)
		}
		for _, t := range path {
			seen[t] = true
		}
	}
	slices.SortFunc(out, func(a, b []int) int { return a[0] - b[0] })
	return out
}
