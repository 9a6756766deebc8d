// Package wl is the Go workloads' side of the ready/go/truth protocol that
// internal/testutil drives (the C workloads use include/workload.h).
package wl

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// Truth is what a workload measured about itself.
type Truth struct {
	PID    int     `json:"pid"`
	Blocks []Block `json:"blocks"`
	CPU    []CPU   `json:"cpu"`
	// Ticks is how often an idle event loop's timer ran in the measured
	// phase (loop_app.py idle): each tick is at least one loop iteration.
	Ticks int `json:"ticks,omitempty"`
}

// Block is the summed blocked time of one function on one thread.
type Block struct {
	Func    string  `json:"func"`
	Syscall string  `json:"syscall,omitempty"`
	PID     int     `json:"pid,omitempty"`
	TID     int     `json:"tid"`
	Count   int     `json:"count"`
	Seconds float64 `json:"seconds"`
	// Target is what the call blocked on, as blockprof labels it, when the
	// workload knows (e.g. "tcp 127.0.0.1:5000->127.0.0.1:6000").
	Target string `json:"target,omitempty"`
	// WakerTID is the thread whose action ended each wait, when known.
	WakerTID int `json:"waker_tid,omitempty"`
	// Kind is "idle" for waits for work; blocking otherwise.
	Kind string `json:"kind,omitempty"`
	// Reason is a goroutine park's wait reason, as goroutine dumps spell
	// it ("chan receive", "sleep"), for the goroutine workloads.
	Reason string `json:"reason,omitempty"`
}

// CPU is one thread's on-CPU time and the wall time it ran for; Wall -
// Seconds is the time it spent runnable but not running.
type CPU struct {
	Func    string  `json:"func"`
	PID     int     `json:"pid,omitempty"`
	TID     int     `json:"tid"`
	Seconds float64 `json:"seconds"`
	Wall    float64 `json:"wall"`
	// Count is how many times the function ran, when the workload counts
	// (an event loop's handler: one stall each).
	Count int `json:"count,omitempty"`
}

// Block returns the entry for fn; ok is false if there is none.
func (tr Truth) Block(fn string) (b Block, ok bool) {
	for _, b := range tr.Blocks {
		if b.Func == fn {
			return b, true
		}
	}
	return Block{}, false
}

// Ready prints "ready role=TID ..." (pairs in the given order).
func Ready(pairs ...any) {
	var b strings.Builder
	b.WriteString("ready")
	for i := 0; i+1 < len(pairs); i += 2 {
		fmt.Fprintf(&b, " %v=%v", pairs[i], pairs[i+1])
	}
	fmt.Println(b.String())
}

// WaitGo returns once a line or EOF arrives on stdin.
func WaitGo() {
	bufio.NewReader(os.Stdin).ReadString('\n')
}

// WriteTruth writes t to $BLOCKPROF_TRUTH, or stdout when that is unset.
func WriteTruth(t Truth) {
	t.PID = os.Getpid()
	if t.Blocks == nil {
		t.Blocks = []Block{}
	}
	if t.CPU == nil {
		t.CPU = []CPU{}
	}
	data, err := json.Marshal(t)
	if err != nil {
		Fatal(err)
	}
	data = append(data, '\n')
	if path := os.Getenv("BLOCKPROF_TRUTH"); path != "" {
		err = os.WriteFile(path, data, 0o644)
	} else {
		_, err = os.Stdout.Write(data)
	}
	if err != nil {
		Fatal(err)
	}
}

// Fatal reports err on stderr and exits 1.
func Fatal(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
