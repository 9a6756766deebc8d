package syscalls

import "testing"

func TestName(t *testing.T) {
	for nr, want := range map[int64]string{0: "read", 1: "write", 35: "nanosleep", 202: "futex", 230: "clock_nanosleep", 281: "epoll_pwait", 455: "futex_wait", 9999: "syscall_9999"} {
		if got := Name(nr); got != want {
			t.Errorf("Name(%d) = %q, want %q", nr, got, want)
		}
	}
}

func TestNumber(t *testing.T) {
	for name, want := range map[string]int{"read": 0, "connect": 42, "futex": 202, "clock_nanosleep": 230, "epoll_pwait2": 441} {
		if got, ok := Number(name); !ok || got != want {
			t.Errorf("Number(%q) = %d, %v; want %d", name, got, ok, want)
		}
		if got := Name(int64(want)); got != name {
			t.Errorf("Name(%d) = %q, want %q", want, got, name)
		}
	}
	if _, ok := Number("no_such_call"); ok {
		t.Error("Number of an unknown name succeeded")
	}
}
