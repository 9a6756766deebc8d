package syscalls

import "testing"

func TestName(t *testing.T) {
	for nr, want := range map[int64]string{0: "read", 1: "write", 35: "nanosleep", 202: "futex", 230: "clock_nanosleep", 281: "epoll_pwait", 455: "futex_wait", 9999: "syscall_9999"} {
		if got := Name(nr); got != want {
			t.Errorf("Name(%d) = %q, want %q", nr, got, want)
		}
	}
}
