package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"blockprof/internal/engine"

	"golang.org/x/sys/unix"
)

// statusText is the status line's text while recording.
func statusText(s engine.Status) string {
	return fmt.Sprintf("recording %s  off-CPU %s blocked, %s run-queue  (%d intervals)",
		s.Elapsed.Round(time.Second), s.Blocked.Round(time.Millisecond),
		s.RunQueue.Round(time.Millisecond), s.Intervals)
}

// statusLine is the one live line on a terminal's stderr while recording.
type statusLine struct {
	w  io.Writer
	on bool
}

func newStatusLine(w io.Writer, quiet bool) *statusLine {
	on := false
	if f, ok := w.(*os.File); ok && !quiet {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		on = err == nil
	}
	return &statusLine{w: w, on: on}
}

func (s *statusLine) show(text string) {
	if s.on {
		fmt.Fprintf(s.w, "\r\033[K%s", text)
	}
}

func (s *statusLine) clear() {
	if s.on {
		fmt.Fprint(s.w, "\r\033[K")
	}
}
