// Package syscalls names system calls by number.
package syscalls

import "fmt"

// Name returns the x86-64 name of syscall nr, or "syscall_N" for one this
// table does not know (a newer kernel).
func Name(nr int64) string {
	if n, ok := x86_64[nr]; ok {
		return n
	}
	return fmt.Sprintf("syscall_%d", nr)
}

var byName = func() map[string]int {
	m := make(map[string]int, len(x86_64))
	for nr, name := range x86_64 {
		m[name] = int(nr)
	}
	return m
}()

// Number is the x86-64 number of the syscall called name ("read", "futex").
func Number(name string) (int, bool) {
	nr, ok := byName[name]
	return nr, ok
}
