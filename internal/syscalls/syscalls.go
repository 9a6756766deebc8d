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
