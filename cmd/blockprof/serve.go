package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"blockprof/internal/engine"
	"blockprof/profiles"

	"github.com/spf13/pflag"
)

// serve runs `blockprof serve`: a long-running profiler. One goroutine
// (the cutter) owns the engine's Recording and is the only caller of
// Snapshot. It cuts the recording into slices, at every window boundary
// (--window) and at the start and end of every on-demand span
// (/debug/pprof/block?seconds=N); a window, or a span, is the sum of the
// consecutive slices between its two cuts. So windows and spans never
// fight over Snapshot, overlap freely, and each covers exactly its own
// time. Slices are dropped once no window or span needs them.
//
// Every complete window is kept as "the last window" (served without
// seconds=), optionally written to --keep-windows, and queued for
// --push. HTTP listens on loopback unless told otherwise. SIGTERM or
// SIGINT ends it: the last (partial) window is flushed and pushed, and
// every BPF program detached.
func serve(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseServeFlags(args, stdout)
	if errors.Is(err, errHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "blockprof: %v\n", err)
		return exitUsage
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "blockprof: %v\n", err)
		return exitError
	}
	if err := checkTargets(cfg.pids, nil); err != nil {
		return fail(err)
	}
	if err := checkPrivileges(); err != nil {
		return fail(err)
	}
	if cfg.keepDir != "" {
		if err := os.MkdirAll(cfg.keepDir, 0o755); err != nil {
			return fail(fmt.Errorf("keep windows: %w", err))
		}
	}
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fail(fmt.Errorf("listen: %w", err))
	}
	defer ln.Close()

	warn := func(msg string) { fmt.Fprintf(stderr, "blockprof: %s\n", msg) }
	ecfg := engine.Config{
		PIDs:          cfg.pids,
		LateTargets:   cfg.late(),
		DrainInterval: cfg.interval,
		MinBlock:      cfg.minBlock,
		UserStacks:    true,
		KernelStacks:  true,
		NoRunQueue:    cfg.noRunQ,
		TargetFrames:  true,
		Unwind:        cfg.unwind,
		Python:        true,
		Comments:      []string{"blockprof serve " + strings.Join(args, " ")},
		Warn:          warn,
	}
	rec, err := engine.Start(ctx, ecfg)
	if err != nil {
		return fail(err)
	}
	defer rec.Close()

	s := newServer(cfg, rec, warn)
	if cfg.late() {
		// The first scan before anything is served: targets already
		// running are in from the first window on.
		s.scanner.scan(rec)
		go s.scanner.run(ctx, rec, 250*time.Millisecond)
	}
	var pushDone chan struct{}
	if s.pusher != nil {
		pushDone = make(chan struct{})
		go func() { s.pusher.run(); close(pushDone) }()
	}
	srv := &http.Server{Handler: s.mux(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	if !cfg.quiet {
		fmt.Fprintf(stderr, "blockprof: serving http://%s/debug/pprof/block, windows of %v\n", ln.Addr(), cfg.window)
	}
	if cfg.readyFile != "" {
		if err := os.WriteFile(cfg.readyFile, []byte(ln.Addr().String()), 0o644); err != nil {
			return fail(fmt.Errorf("create ready file: %w", err))
		}
	}

	why, err := s.cut(ctx)
	// The last window is in the push queue: HTTP stops, the pusher gets
	// a few seconds to deliver what is queued.
	shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	srv.Shutdown(shut)
	cancel()
	if s.pusher != nil {
		s.pusher.close()
		select {
		case <-pushDone:
		case <-time.After(10 * time.Second):
			warn("push: gave up on the queue at exit")
		}
	}
	if err != nil {
		return fail(err)
	}
	if !cfg.quiet {
		m := s.stats.get()
		fmt.Fprintf(stderr, "blockprof: stopped (%s) after %d windows; pushed %d, push drops %d\n",
			why, m.windows, m.pushed, m.pushDrops)
	}
	return exitOK
}

// serveConfig is a parsed `blockprof serve` command line.
type serveConfig struct {
	pids      []int
	comm      *regexp.Regexp
	cgroup    string
	window    time.Duration
	listen    string
	push      string
	service   string
	hostname  string
	queue     int
	keepDir   string
	minBlock  time.Duration
	noRunQ    bool
	unwind    bool
	idle      bool
	quiet     bool
	readyFile string
	interval  time.Duration
}

// late: targets are found while recording (--comm, --cgroup).
func (c *serveConfig) late() bool { return c.comm != nil || c.cgroup != "" }

const serveUsage = `Usage:
  blockprof serve [flags] -p PID[,PID...] | --comm REGEX | --cgroup DIR

Records continuously, in windows (--window), and serves the profiles over HTTP:
  GET /debug/pprof/block?seconds=N   the next N seconds (go tool pprof URL)
  GET /debug/pprof/block             the last complete window
  GET /healthz, /metrics             liveness; Prometheus text metrics
With --push, every window goes to Grafana Pyroscope. SIGTERM/SIGINT flush
the last window and detach.

Flags:
`

// maxSpan bounds seconds=N; maxSpans bounds the spans waiting at once.
const (
	maxSpan  = 10 * time.Minute
	maxSpans = 16
)

func parseServeFlags(args []string, helpOut io.Writer) (*serveConfig, error) {
	c := &serveConfig{}
	fs := newServeFlagSet(c)
	comm := fs.Lookup("comm")
	fs.Usage = func() {
		fmt.Fprint(helpOut, serveUsage)
		fmt.Fprint(helpOut, fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) { // pflag printed the usage
			return nil, errHelp
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if pat := comm.Value.String(); pat != "" {
		re, err := regexp.Compile(pat)
		if err != nil {
			return nil, fmt.Errorf("bad --comm pattern: %v", err)
		}
		c.comm = re
	}
	if len(c.pids) == 0 && !c.late() {
		return nil, errors.New("nothing to profile: give -p PID, --comm REGEX or --cgroup DIR")
	}
	for _, p := range c.pids {
		if p <= 0 {
			return nil, fmt.Errorf("invalid process id %d", p)
		}
	}
	if c.cgroup != "" {
		if _, err := os.Stat(filepath.Join(c.cgroup, "cgroup.procs")); err != nil {
			return nil, fmt.Errorf("--cgroup %s is not a cgroup v2 directory (no cgroup.procs)", c.cgroup)
		}
	}
	if c.window < time.Second {
		return nil, fmt.Errorf("--window %v is below 1s", c.window)
	}
	if c.push != "" && !strings.HasPrefix(c.push, "http://") && !strings.HasPrefix(c.push, "https://") {
		return nil, fmt.Errorf("--push %q: want an http:// or https:// URL", c.push)
	}
	if c.queue < 1 {
		return nil, errors.New("--push-queue must be at least 1")
	}
	if c.interval <= 0 || c.interval > c.window {
		c.interval = min(time.Second, c.window)
	}
	if c.service == "" {
		c.service = defaultService(c)
	}
	if c.hostname == "" {
		c.hostname, _ = os.Hostname()
	}
	return c, nil
}

// newServeFlagSet declares serve's flags (a function of its own so that
// tests can check deploy/daemonset.yaml's arguments against it).
func newServeFlagSet(c *serveConfig) *pflag.FlagSet {
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	fs.IntSliceVarP(&c.pids, "pid", "p", nil, "profile these processes (repeatable, or comma-separated)")
	fs.String("comm", "", "profile processes whose name (comm) matches this regular expression, including ones that start later")
	fs.StringVar(&c.cgroup, "cgroup", "", "profile the processes of this cgroup v2 directory and its sub-cgroups, including later ones")
	fs.DurationVar(&c.window, "window", 15*time.Second, "length of a window: each is kept as the last one, and pushed")
	fs.StringVar(&c.listen, "listen", "127.0.0.1:6060", "HTTP address for /debug/pprof/block, /healthz and /metrics")
	fs.StringVar(&c.push, "push", "", "push every window to this Grafana Pyroscope (e.g. http://pyroscope:4040)")
	fs.StringVar(&c.service, "service-name", "", "service_name label of pushed profiles (default: the target's process name)")
	fs.StringVar(&c.hostname, "hostname", "", "hostname label of pushed profiles (default: this host's name)")
	fs.IntVar(&c.queue, "push-queue", 16, "windows waiting to be pushed at most; more are dropped (counted)")
	fs.DurationVar(&c.minBlock, "min-block", 0, "ignore off-CPU intervals shorter than this (counted as filtered)")
	fs.BoolVar(&c.unwind, "unwind", true, "walk user stacks with .eh_frame tables; false: frame pointers only")
	fs.BoolVar(&c.noRunQ, "no-runqueue", false, "don't split off-CPU time into blocked and run-queue (cheaper for the rest of the machine)")
	fs.BoolVar(&c.idle, "idle", false, "keep idle waits in the profiles, labelled kind=idle")
	fs.BoolVarP(&c.quiet, "quiet", "q", false, "no start and stop lines")
	fs.StringVar(&c.readyFile, "ready-file", "", "create this file, holding the HTTP address, once serving")
	fs.StringVar(&c.keepDir, "keep-windows", "", "also write every window's pprof into this directory (debugging, tests)")
	fs.DurationVar(&c.interval, "drain-interval", time.Second, "how often to read the kernel's aggregation")
	_ = fs.MarkHidden("keep-windows")
	_ = fs.MarkHidden("drain-interval")
	return fs
}

// defaultService names pushed profiles after what is profiled: the first
// PID's process name, a --comm pattern that is a plain name, or the
// cgroup directory's name (foo.service).
func defaultService(c *serveConfig) string {
	if len(c.pids) > 0 {
		if st, ok := readStat(c.pids[0]); ok {
			return st.comm
		}
	}
	if c.comm != nil {
		name := strings.TrimSuffix(strings.TrimPrefix(c.comm.String(), "^"), "$")
		if regexp.MustCompile(`^[A-Za-z0-9_.-]+$`).MatchString(name) {
			return name
		}
	}
	if c.cgroup != "" {
		return filepath.Base(filepath.Clean(c.cgroup))
	}
	return "blockprof"
}

// server is serve's state shared by the cutter, HTTP handlers, the
// scanner and the pusher.
type server struct {
	cfg     *serveConfig
	rec     *engine.Recording
	warn    func(string)
	spans   chan spanRequest
	stats   *serveStats
	scanner *scanner
	pusher  *pusher

	mu   sync.Mutex
	last []byte // the last complete window's pprof, nil before the first
}

func newServer(cfg *serveConfig, rec *engine.Recording, warn func(string)) *server {
	s := &server{cfg: cfg, rec: rec, warn: warn, spans: make(chan spanRequest),
		stats: &serveStats{drops: map[string]uint64{}}}
	s.scanner = &scanner{comm: cfg.comm, cgroup: cfg.cgroup, self: os.Getpid(), seen: map[int]bool{},
		stats: s.stats, warn: warn}
	for _, p := range cfg.pids {
		s.scanner.seen[p] = true
		s.stats.addTargets(1)
	}
	if cfg.push != "" {
		s.pusher = newPusher(cfg, s.stats, warn)
	}
	return s
}

// spanRequest asks the cutter for the next d of recording.
type spanRequest struct {
	d     time.Duration
	reply chan spanResult
}

type spanResult struct {
	pprof []byte
	err   error
}

// slice is the recording between two consecutive cuts.
type slice struct {
	seq int
	p   *profiles.Profile
}

type openSpan struct {
	from  int // first slice
	due   time.Time
	reply chan spanResult
}

// cut is the cutter: the only goroutine that takes snapshots. It runs
// until ctx ends or the recording ends by itself, then stops the
// recording, flushes the last window and answers waiting spans with
// what they have.
func (s *server) cut(ctx context.Context) (string, error) {
	var (
		slices     []slice
		next       int // seq of the next slice
		windowFrom int
		open       []openSpan
	)
	take := func(p *profiles.Profile) {
		slices = append(slices, slice{next, p})
		next++
		s.stats.addSlice(p)
	}
	snap := func() error {
		p, err := s.rec.Snapshot()
		if err != nil {
			return err
		}
		take(p)
		return nil
	}
	from := func(seq int) []*profiles.Profile {
		var out []*profiles.Profile
		for _, sl := range slices {
			if sl.seq >= seq {
				out = append(out, sl.p)
			}
		}
		return out
	}
	window := func() {
		parts := from(windowFrom)
		windowFrom = next
		if len(parts) == 0 {
			return
		}
		s.publish(mergeProfiles(parts))
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	rearm := func() {
		if len(open) == 0 {
			timer.Stop()
			return
		}
		due := open[0].due
		for _, o := range open[1:] {
			if o.due.Before(due) {
				due = o.due
			}
		}
		timer.Reset(time.Until(due))
	}
	answer := func(o openSpan) {
		b, err := s.encode(mergeProfiles(from(o.from)))
		o.reply <- spanResult{b, err}
		s.stats.addSpan()
	}
	prune := func() {
		keep := windowFrom
		for _, o := range open {
			keep = min(keep, o.from)
		}
		i := 0
		for i < len(slices) && slices[i].seq < keep {
			i++
		}
		slices = slices[i:]
	}

	tick := time.NewTicker(s.cfg.window)
	defer tick.Stop()
	why := ""
	var err error
	for why == "" && err == nil {
		select {
		case <-ctx.Done():
			why = engine.ReasonInterrupted
		case <-s.rec.Done():
			why = s.rec.Reason()
		case <-tick.C:
			if err = snap(); err == nil {
				window()
			}
		case req := <-s.spans:
			// The span starts now: cut, and take the slices from here.
			if err = snap(); err == nil {
				open = append(open, openSpan{from: next, due: time.Now().Add(req.d), reply: req.reply})
				rearm()
			}
		case <-timer.C:
			if err = snap(); err != nil {
				break
			}
			// One cut serves every span due within a few ms.
			now, left := time.Now().Add(5*time.Millisecond), open[:0]
			for _, o := range open {
				if o.due.After(now) {
					left = append(left, o)
					continue
				}
				answer(o)
			}
			open = left
			rearm()
		}
		prune()
		s.stats.setOpen(len(open))
	}
	if errors.Is(err, engine.ErrEnded) {
		why, err = s.rec.Reason(), nil
	}
	// The last window: from the last cut to now, exactly (Stop detaches
	// first, then drains).
	p, serr := s.rec.Stop(why)
	if serr == nil {
		take(p)
	} else if err == nil && !errors.Is(serr, engine.ErrEnded) {
		err = serr
	}
	window()
	for _, o := range open {
		answer(o)
	}
	return why, err
}

// publish makes w the last complete window, keeps it on disk if asked,
// and queues it for the push.
func (s *server) publish(w *profiles.Profile) {
	b, err := s.encode(w)
	if err != nil {
		s.warn(fmt.Sprintf("window: %v", err))
		return
	}
	s.mu.Lock()
	s.last = b
	s.mu.Unlock()
	n := s.stats.addWindow()
	if s.cfg.keepDir != "" {
		name := filepath.Join(s.cfg.keepDir, fmt.Sprintf("window-%04d-%d.pb.gz", n, w.Start.UnixNano()))
		if err := os.WriteFile(name, b, 0o644); err != nil {
			s.warn(fmt.Sprintf("keep window: %v", err))
		}
	}
	if s.pusher != nil {
		s.pusher.enqueue(b)
	}
}

func (s *server) encode(p *profiles.Profile) ([]byte, error) {
	var buf bytes.Buffer
	if err := profiles.WritePprof(&buf, withoutIdle(p, s.cfg.idle), profiles.PprofOptions{}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// mergeProfiles sums consecutive slices into one profile covering them
// all: samples side by side (pprof readers add up equal stacks), drops
// added, processes united. The comments are the first slice's.
func mergeProfiles(parts []*profiles.Profile) *profiles.Profile {
	if len(parts) == 1 {
		return parts[0]
	}
	first, last := parts[0], parts[len(parts)-1]
	out := &profiles.Profile{
		Start:     first.Start,
		Duration:  last.Start.Add(last.Duration).Sub(first.Start),
		Comments:  first.Comments,
		Drops:     map[string]uint64{},
		Processes: map[int]profiles.Process{},
	}
	for _, p := range parts {
		out.Samples = append(out.Samples, p.Samples...)
		for k, v := range p.Drops {
			out.Drops[k] += v
		}
		for pid, pr := range p.Processes {
			out.Processes[pid] = pr
		}
	}
	return out
}

func (s *server) mux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET /debug/pprof/block", s.handleBlock)
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-s.rec.Done():
			http.Error(w, "recording ended", http.StatusServiceUnavailable)
		default:
			fmt.Fprintln(w, "ok")
		}
	})
	m.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		s.stats.get().write(w, selfRSS())
	})
	return m
}

func (s *server) handleBlock(w http.ResponseWriter, r *http.Request) {
	secs := r.URL.Query().Get("seconds")
	if secs == "" {
		s.mu.Lock()
		b := s.last
		s.mu.Unlock()
		if b == nil {
			http.Error(w, fmt.Sprintf("no complete window yet (the first ends %v after start); ask for ?seconds=N", s.cfg.window),
				http.StatusServiceUnavailable)
			return
		}
		writePprofResponse(w, b)
		return
	}
	n, err := strconv.ParseFloat(secs, 64)
	d := time.Duration(n * float64(time.Second))
	if err != nil || d < 100*time.Millisecond || d > maxSpan {
		http.Error(w, fmt.Sprintf("bad seconds=%q: want a number of seconds from 0.1 to %v", secs, maxSpan.Seconds()),
			http.StatusBadRequest)
		return
	}
	if !s.stats.beginSpan() {
		http.Error(w, fmt.Sprintf("too many profiles under way (%d)", maxSpans), http.StatusTooManyRequests)
		return
	}
	defer s.stats.endSpan()
	reply := make(chan spanResult, 1) // the cutter never waits for a gone client
	select {
	case s.spans <- spanRequest{d, reply}:
	case <-s.rec.Done():
		http.Error(w, "recording ended", http.StatusServiceUnavailable)
		return
	case <-r.Context().Done():
		return
	}
	select {
	case res := <-reply:
		if res.err != nil {
			http.Error(w, res.err.Error(), http.StatusInternalServerError)
			return
		}
		writePprofResponse(w, res.pprof)
	case <-r.Context().Done():
	}
}

func writePprofResponse(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="block.pb.gz"`)
	w.Write(b)
}
