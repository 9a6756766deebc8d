package profiles

import (
	"io"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// DefaultWidth is the first screen's width when the output is no terminal
// and $COLUMNS is unset: wide enough for a handler, its call and its peer
// on one line, narrow enough for a log or a CI page.
const DefaultWidth = 120

// minWidth keeps the tables' fixed columns apart on a tiny terminal.
const minWidth = 60

// TerminalWidth is the width to lay the first screen out in when writing
// to w: the terminal's (TIOCGWINSZ) when w is one, else $COLUMNS, else
// DefaultWidth.
func TerminalWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
			return max(int(ws.Col), minWidth)
		}
	}
	if n, err := strconv.Atoi(strings.TrimSpace(os.Getenv("COLUMNS"))); err == nil && n > 0 {
		return max(n, minWidth)
	}
	return DefaultWidth
}

func runes(s string) int { return utf8.RuneCountInString(s) }

// clipMiddle cuts s to width characters by taking out its middle, so both
// ends (a package and a method, a directory and a file) stay readable.
func clipMiddle(s string, width int) string {
	n := runes(s)
	if n <= width {
		return s
	}
	if width <= 1 {
		return string([]rune(s)[:max(width, 0)])
	}
	r := []rune(s)
	head := (width - 1) / 2
	tail := width - 1 - head
	return string(r[:head]) + "…" + string(r[n-tail:])
}

// clipFrameLabel fits "function (file.py:12)" into width by cutting the
// middle of the function name; the file and line stay.
func clipFrameLabel(label string, width int) string {
	if runes(label) <= width {
		return label
	}
	if i := strings.LastIndex(label, " ("); i > 0 && strings.HasSuffix(label, ")") {
		room := width - runes(label[i:])
		if room >= 8 {
			return clipMiddle(label[:i], room) + label[i:]
		}
	}
	return clipMiddle(label, width)
}

// culpritLines renders one culprit after prefix in at most width
// characters: "app (file:line) ← caller → call  [syscall peer]". To fit,
// callers go, innermost last; the call and path-like targets are
// clipped in the middle; as a last resort what it waited on moves to a
// second line, indented by indent. The application frame and a socket
// peer are never clipped (a frame name longer than the whole line is cut
// in its middle).
func culpritLines(prefix string, c culprit, width, indent int) []string {
	avail := width - runes(prefix)
	head := c.app
	call := ""
	if c.call != "" {
		call = " → " + c.call
	}
	tgt := c.waitedOn()
	if tgt != "" {
		tgt = "  " + tgt
	}
	// Callers by name only: the application frame's line is the one
	// that matters.
	callers := func(n int) string {
		var sb strings.Builder
		for _, e := range c.callers[:n] {
			sb.WriteString(" ← ")
			sb.WriteString(shortName(e))
		}
		return sb.String()
	}
	fits := func(s string) bool { return runes(s) <= avail }
	for n := len(c.callers); n >= 1; n-- {
		if s := head + callers(n) + call + tgt; fits(s) {
			return []string{prefix + s}
		}
	}
	if call != "" {
		if room := avail - runes(head+tgt) - 3; room >= 10 {
			return []string{prefix + head + " → " + clipMiddle(c.call, room) + tgt}
		}
	}
	if tgt != "" && !c.socketPeer() {
		// A path or other long target gives up its middle first.
		callMin := 0
		if call != "" {
			callMin = min(runes(c.call), 16) + 3
		}
		if room := avail - runes(head) - callMin - 2; room >= min(runes(tgt)-2, 40) {
			t := clipBracket(tgt[2:], room)
			s := head
			if call != "" {
				s += " → " + clipMiddle(c.call, avail-runes(head)-runes(t)-5)
			}
			return []string{prefix + s + "  " + t}
		}
	}
	// Two lines: the frame (and its call when it fits), then the call
	// and what it waited on.
	first := clipFrameLabel(head, avail)
	second := ""
	if call != "" {
		if runes(first+call) <= avail {
			first += call
		} else {
			second = "→ " + c.call
		}
	}
	out := []string{prefix + first}
	if second == "" && tgt == "" {
		return out
	}
	room := width - indent
	t := ""
	if tgt != "" {
		t = tgt[2:]
		if !c.socketPeer() {
			t = clipBracket(t, max(room-min(runes(second), 24)-2, 24))
		}
	}
	if second != "" && t != "" {
		if r := room - runes(t) - 4; r >= 10 {
			second = "→ " + clipMiddle(c.call, r) + "  " + t
		} else {
			second = "→ " + clipMiddle(c.call, max(room-2, 10))
			out = append(out, strings.Repeat(" ", indent)+second)
			second = t
		}
	} else if t != "" {
		second = t
	}
	return append(out, strings.Repeat(" ", indent)+second)
}

// socketPeer: what the culprit waited on is a socket peer, which is never
// clipped.
func (c *culprit) socketPeer() bool {
	kind, _, _ := strings.Cut(c.peer, " ")
	return isSocketKind(kind)
}

// clipBracket clips "[syscall what]" in the middle of what it holds.
func clipBracket(t string, width int) string {
	if runes(t) <= width || len(t) < 2 {
		return t
	}
	inner := t[1 : len(t)-1]
	sc, rest, ok := strings.Cut(inner, " ")
	if ok && runes(sc)+4 < width-8 {
		return "[" + sc + " " + clipMiddle(rest, width-3-runes(sc)) + "]"
	}
	return "[" + clipMiddle(inner, width-2) + "]"
}
