package profiles

import (
	"fmt"
	"io"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// SummaryOptions tunes WriteSummary.
type SummaryOptions struct {
	// Top is how many stacks to list; 10 when zero.
	Top int
	// File is the pprof file written, for the closing "open it" hint;
	// the hint is left out when empty.
	File string
	// Width is the widest line to write, in characters; when zero, the
	// terminal's width if the writer is one, else $COLUMNS, else
	// DefaultWidth (see TerminalWidth).
	Width int
}

// KindIdle is the Sample.Kind of waiting-for-work intervals.
const KindIdle = "idle"

// maxSyscalls bounds the syscall table, for the same reason.
const maxSyscalls = 6

// maxTargets bounds the per-process lines so the summary stays one screen.
const maxTargets = 8

// WriteSummary writes the first screen to read after a recording: how long,
// which targets, how much time was blocked or waiting for a CPU, the stacks
// that blocked longest and where, what was dropped, and how to open the
// pprof file. Output is deterministic plain text, opts.Width columns wide.
// Each stack line starts at the application's own frame and shows the
// library call it went through and the peer it waited on (see culprit.go).
// Idle samples get one line of their own and no place in the ranking.
func WriteSummary(w io.Writer, p *Profile, opts SummaryOptions) {
	top := opts.Top
	if top <= 0 {
		top = 10
	}
	width := opts.Width
	if width <= 0 {
		width = TerminalWidth(w)
	}
	var lines []string
	add := func(format string, args ...any) {
		lines = append(lines, wrap(fmt.Sprintf(format, args...), width)...)
	}
	// addLines adds lines laid out to fit already.
	addLines := func(ls []string) { lines = append(lines, ls...) }

	var blocked, runq time.Duration
	var count int64
	procs := map[int]*procTotal{}
	for pid, pr := range p.Processes {
		procs[pid] = &procTotal{pid: pid, comm: pr.Comm, exited: pr.Exited}
	}
	var idleTime time.Duration
	var idleCount int64
	for _, s := range p.Samples {
		if s.Kind == KindIdle {
			idleTime += s.Blocked + s.RunQueue
			idleCount += s.Count
			continue
		}
		blocked += s.Blocked
		runq += s.RunQueue
		count += s.Count
		pt := procs[s.PID]
		if pt == nil {
			pt = &procTotal{pid: s.PID, comm: s.Comm}
			procs[s.PID] = pt
		}
		if pt.comm == "" {
			pt.comm = s.Comm
		}
		pt.blocked += s.Blocked
		pt.runq += s.RunQueue
	}

	add("blockprof: recorded %s, %s, %s off-CPU %s",
		fmtDur(p.Duration), plural(len(procs), "target"), thousands(count),
		pluralWord(count, "interval"))
	if p.Asked > 0 {
		add("stopped after %s of the %s asked for: %s", fmtDur(p.Duration), fmtDur(p.Asked), p.Stopped)
	}
	add("off-CPU: %s blocked (switch-out to wakeup) + %s run-queue (wakeup to running)",
		fmtDur(blocked), fmtDur(runq))
	if idleCount > 0 {
		add("idle (waiting for work, not ranked below): %s in %s %s",
			fmtDur(idleTime), thousands(idleCount), pluralWord(idleCount, "interval"))
	}
	writeLoops(add, addLines, p, width)
	writeWaiting(add, addLines, p, width)

	pts := make([]*procTotal, 0, len(procs))
	for _, pt := range procs {
		pts = append(pts, pt)
	}
	sort.Slice(pts, func(i, j int) bool {
		if pts[i].blocked != pts[j].blocked {
			return pts[i].blocked > pts[j].blocked
		}
		return pts[i].pid < pts[j].pid
	})
	for i, pt := range pts {
		if i == maxTargets {
			add("  … and %d more", len(pts)-maxTargets)
			break
		}
		name := pt.comm
		if name == "" {
			name = "?"
		}
		if pt.exited {
			name += " (exited)"
		}
		add("  pid %-7d %-24s blocked %8s  run-queue %8s",
			pt.pid, name, fmtDur(pt.blocked), fmtDur(pt.runq))
	}

	groups := topStacks(p.Samples)
	// Name the process on each line only when there is more than one name.
	comms := map[string]bool{}
	for _, g := range groups {
		comms[g.comm] = true
	}
	multi := len(comms) > 1
	if len(groups) == 0 {
		add("no blocked time recorded")
	} else {
		if len(groups) > top {
			add("top %d of %d stacks by blocked time:", top, len(groups))
			groups = groups[:top]
		} else {
			add("stacks by blocked time:")
		}
		add("%7s %6s %5s %-2s %s", "blocked", "%", "count", "st",
			"application frame → library call  [what it waited on]")
		for _, g := range groups {
			pct := 0.0
			if blocked > 0 {
				pct = 100 * float64(g.blocked) / float64(blocked)
			}
			prefix := fmt.Sprintf("%7s %5.1f%% %5s %-2s ",
				fmtDur(g.blocked), pct, "x"+strconv.FormatInt(g.count, 10), g.state)
			if multi {
				prefix += clip(g.comm, 12) + ": "
			}
			addLines(culpritLines(prefix, g.culprit(), width, 24))
		}
	}

	var rows []Latency
	for _, l := range p.Latency {
		if !l.Idle {
			rows = append(rows, l)
		}
	}
	if len(rows) > 0 {
		add("by syscall and target (single intervals; idle left out):")
		// The target column takes what the fixed columns leave; a long
		// target keeps its end (the peer, the file name).
		tw := min(max(width-58, 16), 80)
		add("  %-15s %-*s %6s %8s %7s %7s %7s", "syscall", tw, "target", "count", "total", "p50≤", "p99≤", "max")
		for i, l := range rows {
			if i == maxSyscalls {
				add("  … and %d more", len(rows)-maxSyscalls)
				break
			}
			target := l.Target
			if target == "" {
				target = "-"
			}
			add("  %-15s %-*s %6s %8s %7s %7s %7s", clip(l.Syscall, 15), tw, clipLeft(target, tw), thousands(l.Count),
				fmtDur(l.Total), fmtDur(l.P50), fmtDur(l.P99), fmtDur(l.Max))
		}
	}
	add("%s", dropLine(p.Drops))
	if opts.File != "" {
		add("open: go tool pprof -http=:0 %s", shellQuote(opts.File))
	}
	for _, l := range lines {
		io.WriteString(w, l+"\n")
	}
}

// wrap breaks a line too long for width after its last ", " or before
// its last " (" or " + " that fits, continuing 4 columns further in; a
// line with no such place is clipped.
func wrap(s string, width int) []string {
	var out []string
	for runes(s) > width {
		r := []rune(s)
		cut := -1
		for i := width - 1; i > width/3; i-- {
			if r[i] == ' ' && (r[i-1] == ',' || i+1 < len(r) && (r[i+1] == '(' || r[i+1] == '+')) {
				cut = i
				break
			}
		}
		if cut < 0 {
			break
		}
		out = append(out, strings.TrimRight(string(r[:cut]), " "))
		indent := len(s) - len(strings.TrimLeft(s, " ")) + 4
		s = strings.Repeat(" ", indent) + strings.TrimLeft(string(r[cut:]), " ")
		if indent >= width/2 {
			break
		}
	}
	return append(out, clip(s, width))
}

// clipLeft keeps the end of s, which for paths and addresses is the part
// that tells (the file name, the peer), marking the cut with "…".
func clipLeft(s string, width int) string {
	n := utf8.RuneCountInString(s)
	if n <= width {
		return s
	}
	r := []rune(s)
	return "…" + string(r[n-width+1:])
}

type procTotal struct {
	pid           int
	comm          string
	exited        bool
	blocked, runq time.Duration
}

// stackGroup is the samples of all threads that blocked in the same
// application frame, through the same call, on the same peer: a pool of
// threads waiting on one queue, or a handler's many connections to one
// backend, is one line.
type stackGroup struct {
	key, comm, state string
	count            int64
	blocked          time.Duration
	top              time.Duration // the heaviest member's blocked time
	c                culprit       // the heaviest member's
	syscalls         map[string]time.Duration
}

// culprit is the group's culprit with every syscall it blocked in,
// heaviest first ("recvfrom/connect").
func (g *stackGroup) culprit() culprit {
	c := g.c
	c.syscall = joinByWeight(g.syscalls)
	return c
}

// joinByWeight lists names heaviest first, "/"-separated.
func joinByWeight(m map[string]time.Duration) string {
	names := make([]string, 0, len(m))
	for n := range m {
		if n != "" {
			names = append(names, n)
		}
	}
	sort.Slice(names, func(i, j int) bool {
		if m[names[i]] != m[names[j]] {
			return m[names[i]] > m[names[j]]
		}
		return names[i] < names[j]
	})
	return strings.Join(names, "/")
}

func topStacks(samples []Sample) []*stackGroup {
	byKey := map[string]*stackGroup{}
	var groups []*stackGroup
	for i := range samples {
		s := &samples[i]
		if s.Blocked <= 0 || s.Kind == KindIdle {
			continue
		}
		c := culpritOf(*s)
		key := s.Comm + "\x00" + c.key()
		g := byKey[key]
		if g == nil {
			g = &stackGroup{key: key, comm: s.Comm, syscalls: map[string]time.Duration{}}
			byKey[key] = g
			groups = append(groups, g)
		}
		if s.Blocked > g.top || (s.Blocked == g.top && s.State < g.state) {
			g.top, g.c, g.state = s.Blocked, c, s.State
		}
		g.count += s.Count
		g.blocked += s.Blocked
		g.syscalls[c.syscall] += s.Blocked
	}
	sort.Slice(groups, func(i, j int) bool {
		a, b := groups[i], groups[j]
		if a.blocked != b.blocked {
			return a.blocked > b.blocked
		}
		if a.count != b.count {
			return a.count > b.count
		}
		return a.key < b.key
	})
	return groups
}

// TellingFrames returns up to n frames that best say where a sample's thread
// waited, innermost first, each as "function (file.go:31)": the leaf-most
// user frame that is not a libc, vDSO or Go runtime/syscall wrapper, then
// its callers. Inlined frames count as frames. Without user frames it falls
// back to kernel frames below the scheduler, then to whatever the stack
// holds (such as "[unknown stack]").
func TellingFrames(s Sample, n int) []string {
	es := tellingEntries(s, n)
	if len(es) == 0 {
		return nil
	}
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = frameLabel(e)
	}
	return out
}

func tellingEntries(s Sample, n int) []entry {
	if n <= 0 {
		return nil
	}
	var user, kern, other []entry
	for _, e := range flatten(s.Stack) {
		switch {
		case isSynthetic(e.loc):
			other = append(other, e)
		case isKernel(e.loc):
			kern = append(kern, e)
		default:
			user = append(user, e)
		}
	}
	pick := func(es []entry, skip func(entry) bool) []entry {
		start := 0
		for start < len(es) && skip(es[start]) {
			start++
		}
		if start == len(es) {
			start = 0 // all wrappers: the wrappers are all there is to say
		}
		return es[start:min(start+n, len(es))]
	}
	// In an interpreted program the interpreter's own C frames below the
	// innermost script frame (time_sleep, cfunction_vectorcall_O, ...)
	// only carry out what that line asked for: start at the script frame.
	if i := innermostScript(user); i > 0 {
		user = user[i:]
	}
	switch {
	case len(user) > 0:
		return pick(user, isWrapper)
	case len(kern) > 0:
		return pick(kern, func(e entry) bool { return isKernelPlumbing(e.name()) })
	case len(other) > 0:
		return pick(other, func(entry) bool { return false })
	}
	return nil
}

// frameLabel is "name (file.go:31)", with the file's base name only.
func frameLabel(e entry) string {
	name := e.name()
	if e.frame == nil || e.frame.File == "" || isKernel(e.loc) {
		return name
	}
	file := path.Base(e.frame.File)
	if e.frame.Line > 0 {
		return fmt.Sprintf("%s (%s:%d)", name, file, e.frame.Line)
	}
	return fmt.Sprintf("%s (%s)", name, file)
}

// KernelWhere says where in the kernel a sample's thread slept, as
// "syscall → function" (e.g. "read → pipe_read"): the system call it was in,
// taken from the "syscall" label or the kernel's syscall entry frame, and
// the innermost kernel function that is not scheduler or entry plumbing.
// Either half may be missing; "" when the stack has no kernel frames and
// the sample no syscall label.
func KernelWhere(s Sample) string {
	syscall := s.Labels["syscall"]
	fn := ""
	for _, e := range flatten(s.Stack) {
		if !isKernel(e.loc) || e.frame == nil {
			continue
		}
		name := e.name()
		if sc, ok := syscallName(name); ok {
			if s.Labels["syscall"] == "" {
				syscall = sc // keep going: the outermost entry frame wins
			}
			continue
		}
		if fn == "" && !isKernelPlumbing(name) {
			fn = name
		}
	}
	switch {
	case syscall != "" && fn != "":
		return syscall + " → " + fn
	case syscall != "":
		return syscall
	}
	return fn
}

// syscallPrefixes are the names the kernel gives system call entry points.
var syscallPrefixes = []string{
	"__x64_sys_", "__ia32_sys_", "__arm64_sys_", "__riscv_sys_", "__s390x_sys_",
	"__x64_compat_sys_", "__ia32_compat_sys_", "__se_sys_", "__do_sys_", "sys_",
	// read/write/pread… enter through ksys_* when the sys_ wrapper is inlined.
	"ksys_",
}

func syscallName(fn string) (string, bool) {
	for _, p := range syscallPrefixes {
		if strings.HasPrefix(fn, p) && len(fn) > len(p) {
			return fn[len(p):], true
		}
	}
	return "", false
}

// kernelPlumbing are kernel functions every blocked stack passes through;
// naming them says nothing about why the thread waited.
var kernelPlumbing = []string{
	"__schedule", "schedule", "io_schedule", "preempt_schedule", "__cond_resched",
	"_cond_resched", "finish_task_switch", "__switch_to", "context_switch",
	"__traceiter_", "bpf_", "__bpf_", "do_syscall_", "entry_SYSCALL", "x64_sys_call",
	"syscall_exit", "exit_to_user_mode", "irqentry_exit", "asm_", "ret_from_fork",
	"__do_fast_syscall", "do_fast_syscall", "do_int80",
}

func isKernelPlumbing(fn string) bool {
	for _, p := range kernelPlumbing {
		if strings.HasPrefix(fn, p) {
			return true
		}
	}
	return false
}

// wrapperFiles are libraries whose frames only forward to the kernel.
var wrapperFiles = []string{
	"libc.so", "libc-", "libpthread", "ld-linux", "ld-musl", "libc.musl",
	"[vdso]", "linux-vdso",
}

// wrapperPackages are Go packages that only forward to the kernel.
var wrapperPackages = []string{
	"syscall.", "internal/runtime/syscall", "runtime/internal/syscall",
	"internal/syscall/", "internal/poll.", "golang.org/x/sys/unix.",
}

// wrapperFuncs are Go runtime functions that sleep on behalf of a caller
// that says more: a lock, a note, the scheduler.
var wrapperFuncs = map[string]bool{
	"runtime.futex": true, "runtime.futexsleep": true, "runtime.futexwakeup": true,
	"runtime.usleep": true, "runtime.usleep_no_g": true, "runtime.nanosleep": true,
	"runtime.osyield": true, "runtime.osyield_no_g": true, "runtime.notesleep": true,
	"runtime.notetsleep": true, "runtime.notetsleep_internal": true,
	"runtime.notetsleepg": true, "runtime.semasleep": true, "runtime.mPark": true,
	"runtime.read": true, "runtime.write1": true, "runtime.epollwait": true,
	"runtime.lock2": true, "runtime.lockWithRank": true, "runtime.lock": true,
	"runtime.systemstack": true, "runtime.asmcgocall": true, "runtime.mcall": true,
	"runtime.entersyscall": true, "runtime.entersyscallblock": true,
	"runtime.exitsyscall": true, "runtime.reentersyscall": true,
	"runtime.cgocall": true,
	"os.(*File).read": true, "os.(*File).write": true, "os.(*File).pread": true,
	"os.(*File).pwrite": true, "os.(*File).Read": true, "os.(*File).Write": true,
	"os.(*File).ReadAt": true, "os.(*File).WriteAt": true,
}

// scriptExts are the source files of interpreted frames.
var scriptExts = []string{".py", ".js", ".mjs", ".rb"}

// innermostScript is the index of the first (leaf-most) frame in a script
// file, or -1.
func innermostScript(es []entry) int {
	for i, e := range es {
		if e.frame == nil {
			continue
		}
		for _, ext := range scriptExts {
			if strings.HasSuffix(e.frame.File, ext) {
				return i
			}
		}
	}
	return -1
}

func isWrapper(e entry) bool {
	if m := e.loc.Mapping; m != nil {
		base := path.Base(m.File)
		for _, p := range wrapperFiles {
			if strings.HasPrefix(base, p) {
				return true
			}
		}
	}
	name := e.name()
	if wrapperFuncs[name] {
		return true
	}
	for _, p := range wrapperPackages {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func dropLine(drops map[string]uint64) string {
	var total uint64
	reasons := make([]string, 0, len(drops))
	for r, n := range drops {
		if n > 0 {
			total += n
			reasons = append(reasons, r)
		}
	}
	if total == 0 {
		return "no drops"
	}
	// Biggest loss first: it is the one to act on.
	sort.Slice(reasons, func(i, j int) bool {
		if drops[reasons[i]] != drops[reasons[j]] {
			return drops[reasons[i]] > drops[reasons[j]]
		}
		return reasons[i] < reasons[j]
	})
	parts := make([]string, len(reasons))
	for i, r := range reasons {
		parts[i] = fmt.Sprintf("%s %s", r, thousands(int64(drops[r])))
	}
	verdict := "some detail missing, totals exact"
	for _, r := range reasons {
		if !detailOnly[r] {
			verdict = "totals above are low"
		}
	}
	return fmt.Sprintf("drops: %s (%s) — %s",
		thousands(int64(total)), strings.Join(parts, ", "), verdict)
}

// detailOnly are losses that leave every interval's time counted: a stack,
// a name, a target or a histogram bucket is missing, not the interval.
var detailOnly = map[string]bool{
	"user_stack_collision": true, "user_stack_error": true,
	"kernel_stack_collision": true, "kernel_stack_error": true,
	"thread_names_full": true, "latency_histograms_full": true,
	"fd_target_unreadable": true, "syscall_arg_unreadable": true,
	"user_symbols_process_gone": true, "user_symbols_exited_unread": true,
	"python_frames_unreadable": true, "python_stack_truncated": true,
	"user_stack_unwind_partial": true, "user_stack_truncated": true,
	"user_stack_before_tables": true,
}

// fmtDur keeps three significant digits so columns stay narrow.
func fmtDur(d time.Duration) string {
	switch {
	case d >= 100*time.Second:
		return fmt.Sprintf("%.0fs", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	case d >= time.Microsecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d > 0:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	}
	return "0s"
}

func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

func pluralWord(n int64, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

func plural(n int, word string) string {
	return strconv.Itoa(n) + " " + pluralWord(int64(n), word)
}

// clip cuts s to width characters, marking the cut.
func clip(s string, width int) string {
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	if width <= 1 {
		return string([]rune(s)[:max(width, 0)])
	}
	return string([]rune(s)[:width-1]) + "…"
}

// shellQuote quotes a path only when a shell would split or expand it.
func shellQuote(s string) string {
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			strings.ContainsRune("/._-+:,=@%", r)) {
			safe = false
			break
		}
	}
	if safe && s != "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
