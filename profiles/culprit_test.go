package profiles

import (
	"strings"
	"testing"

	"blockprof/internal/symbolize"
)

// The rules that decide which frames are the application's, per runtime
// (the README's table).
func TestClassifyRules(t *testing.T) {
	py := &symbolize.Mapping{File: "[python]"}
	anon := &symbolize.Mapping{File: "//anon"}
	goExe := &symbolize.Mapping{File: "/srv/app/app"}
	for _, tc := range []struct {
		name  string
		m     *symbolize.Mapping
		f     symbolize.Frame
		rt    runtime
		class frameClass
		pkg   string
	}{
		// Python: by the code object's file.
		{"py app", py, fr("get_user", "/srv/app/app.py", 118), rtPython, classApp, ""},
		{"py relative app", py, fr("main", "app.py", 3), rtPython, classApp, ""},
		{"py dist-packages", py, fr("ListCommands.blpop", "/usr/lib/python3/dist-packages/redis/commands/core.py", 1),
			rtPython, classLibrary, "redis"},
		{"py site-packages venv", py, fr("get", "/venv/lib/python3.12/site-packages/requests/api.py", 1),
			rtPython, classLibrary, "requests"},
		{"py single-module lib", py, fr("f", "/usr/lib/python3/dist-packages/six.py", 1), rtPython, classLibrary, "six"},
		{"py stdlib", py, fr("urlopen", "/usr/lib/python3.11/urllib/request.py", 216), rtPython, classStdlib, "urllib"},
		{"py stdlib pyenv", py, fr("SocketIO.readinto", "/root/.pyenv/versions/3.12.7/lib/python3.12/socket.py", 1),
			rtPython, classStdlib, "socket"},
		{"py frozen", py, fr("_find_and_load", "<frozen importlib._bootstrap>", 1), rtPython, classStdlib,
			"importlib._bootstrap"},
		{"py perf map", anon, symbolize.Frame{Function: "py::get_user:/srv/app/app.py"}, rtPython, classApp, ""},
		// Node: perf-map names carry the location.
		{"js app", anon, symbolize.Frame{Function: "JS:~blockingRead /srv/app/fifo.js:12:22"}, rtNode, classApp, ""},
		{"js builtin", anon, symbolize.Frame{Function: "JS:~readSync node:fs:708:18"}, rtNode, classStdlib, "fs"},
		{"js old builtin", anon, symbolize.Frame{Function: "LazyCompile:*readSync fs.js:590"}, rtNode, classStdlib, "fs"},
		{"js node_modules", anon, symbolize.Frame{Function: "JS:*get /srv/app/node_modules/ioredis/built/Redis.js:9:1"},
			rtNode, classLibrary, "ioredis"},
		{"js scoped", anon, symbolize.Frame{Function: "JS:*q /srv/node_modules/@databases/pg/lib/index.js:1:1"},
			rtNode, classLibrary, "@databases/pg"},
		// Go: by package path and file.
		{"go main", goExe, fr("main.fetchQuote", "/src/app/main.go", 41), rtGo, classApp, ""},
		{"go own module", goExe, fr("example.com/app/store.(*DB).Get", "/src/app/store/db.go", 9), rtGo, classApp, ""},
		{"go runtime", goExe, fr("runtime.gopark", "/usr/local/go/src/runtime/proc.go", 1), rtGo, classStdlib, "runtime"},
		{"go runtime asm", goExe, fr("runtime.futex", "/usr/local/go/src/runtime/sys_linux_amd64.s", 1), rtGo,
			classStdlib, "runtime"},
		{"go stdlib", goExe, fr("net/http.(*Client).Do", "/usr/local/go/src/net/http/client.go", 1), rtGo,
			classStdlib, "net/http"},
		{"go module cache", goExe, fr("github.com/redis/go-redis/v9.(*Client).Get",
			"/root/go/pkg/mod/github.com/redis/go-redis/v9@v9.5.1/commands.go", 1), rtGo, classLibrary,
			"github.com/redis/go-redis/v9"},
		{"go trimpath dep", goExe, fr("github.com/lib/pq.(*conn).recv", "github.com/lib/pq@v1.10.9/conn.go", 1), rtGo,
			classLibrary, "github.com/lib/pq"},
		{"go vendored", goExe, fr("github.com/lib/pq.(*conn).recv", "/src/app/vendor/github.com/lib/pq/conn.go", 1),
			rtGo, classLibrary, "github.com/lib/pq"},
		// Native: by the mapped file.
		{"c exe", &symbolize.Mapping{File: "/opt/svc/svc"}, fr("wait_result", "/src/db.c", 88), rtNative, classApp, ""},
		{"c own lib", &symbolize.Mapping{File: "/opt/svc/lib/libsvc.so"}, fr("f", "", 0), rtNative, classApp, ""},
		{"libc", &symbolize.Mapping{File: "/usr/lib/x86_64-linux-gnu/libc.so.6"}, fr("__GI___libc_read", "", 0),
			rtNative, classSystem, "libc"},
		{"libpq", &symbolize.Mapping{File: "/usr/lib/x86_64-linux-gnu/libpq.so.5.15"}, fr("PQexec", "", 0),
			rtNative, classSystem, "libpq"},
		{"ld.so", &symbolize.Mapping{File: "/lib64/ld-linux-x86-64.so.2"}, fr("_dl_x", "", 0), rtNative,
			classSystem, "ld-linux-x86-64"},
		{"interpreter", &symbolize.Mapping{File: "/usr/bin/python3.11"}, fr("time_sleep", "", 0), rtNative,
			classSystem, "python3.11"},
		{"pyenv libpython", &symbolize.Mapping{File: "/root/.pyenv/versions/3.12.7/lib/libpython3.12.so.1.0"},
			fr("pysleep", "", 0), rtNative, classSystem, "libpython3.12"},
		{"node binary", &symbolize.Mapping{File: "/usr/bin/node"}, fr("uv_fs_read", "", 0), rtNative, classSystem, "node"},
		{"C extension", &symbolize.Mapping{File: "/usr/lib/python3/dist-packages/hiredis/hiredis.cpython-311-x86_64-linux-gnu.so"},
			fr("Reader_gets", "", 0), rtNative, classLibrary, "hiredis"},
		{"no mapping", nil, symbolize.Frame{}, rtNative, classSystem, ""},
	} {
		l := symbolize.Location{Address: 0x1234, Mapping: tc.m, Frames: []symbolize.Frame{tc.f}}
		es := flatten([]symbolize.Location{l})
		c := classify(es[0])
		if c.rt != tc.rt || c.class != tc.class || c.pkg != tc.pkg {
			t.Errorf("%s: runtime %d class %d package %q, want %d %d %q", tc.name, c.rt, c.class, c.pkg,
				tc.rt, tc.class, tc.pkg)
		}
	}
	k := classify(flatten(kframes(&symbolize.Mapping{File: kernelFile}, 1, "schedule"))[0])
	s := classify(flatten([]symbolize.Location{SyntheticLocation("[read x]")})[0])
	if k.class != classKernel || s.class != classSynthetic {
		t.Errorf("kernel %d, synthetic %d", k.class, s.class)
	}
}

// Sockets are grouped by peer, named by well-known port or by the client
// library on the stack; the server side of a connection by its own
// address; other targets stay as recorded.
func TestPeerName(t *testing.T) {
	for _, tc := range []struct {
		target string
		pkgs   []string
		want   string
	}{
		{"tcp 127.0.0.1:58456->127.0.0.1:6379", nil, "tcp → 127.0.0.1:6379 (redis)"},
		{"tcp 127.0.0.1:58456->127.0.0.1:42767", []string{"socket", "redis"}, "tcp → 127.0.0.1:42767 (redis)"},
		{"tcp 127.0.0.1:58456->127.0.0.1:42767", []string{"socket"}, "tcp → 127.0.0.1:42767"},
		{"tcp 10.0.0.5:50412->10.0.0.9:5432", nil, "tcp → 10.0.0.9:5432 (postgres)"},
		{"tcp 10.0.0.5:50412->10.0.0.9:3306", nil, "tcp → 10.0.0.9:3306 (mysql)"},
		{"tcp 10.0.0.5:50412->10.0.0.9:11211", nil, "tcp → 10.0.0.9:11211 (memcached)"},
		{"tcp6 [::1]:50412->[::1]:443", nil, "tcp6 → [::1]:443 (https)"},
		{"tcp 127.0.0.1:51000->127.0.0.1:8081", []string{"socket", "http", "urllib"}, "tcp → 127.0.0.1:8081 (http)"},
		{"tcp 127.0.0.1:9000->127.0.0.1:61234", nil, "tcp 127.0.0.1:9000 ← clients"},
		{"tcp 127.0.0.1:80->127.0.0.1:61234", nil, "tcp 127.0.0.1:80 ← clients (http)"},
		{"tcp 0.0.0.0:8080", nil, "tcp 0.0.0.0:8080"},
		{"unix ->/run/redis.sock", nil, "unix → /run/redis.sock"},
		{"unix /run/app.sock", nil, "unix /run/app.sock"},
		{"fifo /tmp/x/fifo", []string{"redis"}, "fifo /tmp/x/fifo"},
		{"sleep 15ms", nil, "sleep 15ms"},
		{"", nil, ""},
	} {
		if got := peerName(tc.target, tc.pkgs); got != tc.want {
			t.Errorf("peerName(%q, %q) = %q, want %q", tc.target, tc.pkgs, got, tc.want)
		}
	}
}

// Each line starts at the application frame and names the call: Python
// (through a library, a standard-library module, a builtin), Go, C.
func TestCulpritOf(t *testing.T) {
	p := serviceFixture()
	want := map[string]string{
		"tcp 127.0.0.1:58456->127.0.0.1:42767": "get_user (app.py:118)|redis blpop|tcp → 127.0.0.1:42767 (redis)",
		"tcp 127.0.0.1:51000->127.0.0.1:8081":  "get_profile (app.py:131)|urllib urlopen|tcp → 127.0.0.1:8081 (http)",
		"fifo /tmp/fastapi_app-3xk1/feeds/incoming/orders.fifo": "get_feed (app.py:144)||" +
			"fifo /tmp/fastapi_app-3xk1/feeds/incoming/orders.fifo",
		"tcp 127.0.0.1:40112->127.0.0.1:9911": "main.fetchQuote (main.go:41)|net.(*conn).Read|tcp → 127.0.0.1:9911",
		"tcp 10.0.0.5:50412->10.0.0.9:5432":   "wait_result (db.c:88)|libc recv|tcp → 10.0.0.9:5432 (postgres)",
	}
	seen := 0
	for _, s := range p.Samples {
		w, ok := want[s.Labels["target"]]
		if !ok || s.Loop != nil {
			continue
		}
		seen++
		c := culpritOf(s)
		if got := c.app + "|" + c.call + "|" + c.peer; got != w || !c.found {
			t.Errorf("%s: %q (application frame found: %v), want %q", s.Labels["target"], got, c.found, w)
		}
	}
	if seen != len(want) {
		t.Errorf("%d samples checked, want %d", seen, len(want))
	}
	// The to_thread worker's frame is the application's too, with its
	// own (thread-pool) callers left out.
	for _, s := range p.Samples {
		if s.Thread == "asyncio_0" {
			if c := culpritOf(s); c.app != "blocking_lookup (app.py:101)" || len(c.callers) != 0 {
				t.Errorf("worker: %q ← %d callers", c.app, len(c.callers))
			}
		}
	}
	// Application callers of the frame are kept.
	f := newFixture()
	c := culpritOf(Sample{Stack: f.readStack})
	if c.app != "block_read (io.c:31)" || len(c.callers) != 2 || c.callers[1].name() != "main" || c.call != "libc read" {
		t.Errorf("C: %q ← %d callers → %q", c.app, len(c.callers), c.call)
	}
}

// Two connections to one peer are one line; the to_thread worker and
// the loop's handlers are told apart; nothing important is clipped.
func TestSummaryCulprits(t *testing.T) {
	out := summary(serviceFixture(), SummaryOptions{Width: 200})
	if n := strings.Count(out, "get_user (app.py:118) → redis blpop  [recvfrom tcp → 127.0.0.1:42767 (redis)]"); n != 2 {
		t.Errorf("get_user's redis line %d times, want 2 (stacks and loop table):\n%s", n, out)
	}
	for _, bad := range []string{"58456", "58470", "SocketBuffer", "SocketIO", "…27.0.0.1"} {
		if strings.Contains(out, bad) {
			t.Errorf("first screen shows %q:\n%s", bad, out)
		}
	}
	loop := out[strings.Index(out, "event loops"):strings.Index(out, "stacks by blocked time")]
	if strings.Contains(loop, "blocking_lookup") {
		t.Errorf("the to_thread worker is in the loop table:\n%s", loop)
	}
	for _, want := range []string{
		"get_profile (app.py:131) → urllib urlopen  [recvfrom tcp → 127.0.0.1:8081 (http)]",
		"get_feed (app.py:144)  [read fifo /tmp/fastapi_app-3xk1/feeds/incoming/orders.fifo]",
		"render_report (app.py:160) ← get_report",
	} {
		if !strings.Contains(loop, want) {
			t.Errorf("loop table lacks %q:\n%s", want, loop)
		}
	}
}

// The loop table's numbers: per handler, blocked + on CPU + run-queue is
// the stall time, and lines of one function are one handler.
func TestLoopHandlers(t *testing.T) {
	hs := LoopHandlers(serviceFixture(), 4100)
	if len(hs) != 5 {
		t.Fatalf("%d handlers, want 5: %+v", len(hs), hs)
	}
	h := hs[0]
	if h.Handler != "get_user (app.py:118)" || h.Func != "get_user" || !h.App || h.Stalls != 79 ||
		h.Blocked.Milliseconds() != 2430 || h.OnCPU.Milliseconds() != 40 || h.RunQueue.Milliseconds() != 4 ||
		h.Time != h.Blocked+h.OnCPU+h.RunQueue {
		t.Errorf("get_user: %+v", h)
	}
	if len(h.WaitedOn) != 1 || h.WaitedOn[0] != "→ redis blpop  [recvfrom tcp → 127.0.0.1:42767 (redis)]" {
		t.Errorf("get_user waited on %q", h.WaitedOn)
	}
	if last := hs[len(hs)-1]; last.App || last.Handler != "[on CPU, not sampled]" {
		t.Errorf("last handler %+v", last)
	}
}

// Clipping takes the middle out, keeps a socket peer whole, and a frame
// name longer than the line keeps its file and line.
func TestClipping(t *testing.T) {
	if got := clipMiddle("abcdefghij", 5); got != "ab…ij" {
		t.Errorf("clipMiddle: %q", got)
	}
	if got := clipFrameLabel("a_very_long_function_name_indeed (x.go:9)", 24); got != "a_very_…_indeed (x.go:9)" {
		t.Errorf("clipFrameLabel: %q", got)
	}
	c := culprit{app: "handler (app.py:1)", call: "somelibrary some_really_long_method_name", syscall: "recvfrom",
		peer: "tcp → 192.168.100.200:65000 (redis)"}
	for _, w := range []int{60, 70, 80, 100} {
		ls := culpritLines("1234567890 ", c, w, 6)
		all := strings.Join(ls, "\n")
		if !strings.Contains(all, c.peer) || !strings.Contains(all, c.app) {
			t.Errorf("width %d: peer or frame clipped:\n%s", w, all)
		}
		for _, l := range ls {
			if runes(l) > w {
				t.Errorf("width %d: line of %d: %q", w, runes(l), l)
			}
		}
	}
}

// A Node frame from a perf map reads like the others; pipes (one per
// child or connection) are one target.
func TestJSLabelAndPipes(t *testing.T) {
	if got := jsLabel("JS:~runSleep /srv/app/loop.js:60:18"); got != "runSleep (loop.js:60)" {
		t.Errorf("jsLabel: %q", got)
	}
	if got := jsLabel("JS:*busy"); got != "busy" {
		t.Errorf("jsLabel without location: %q", got)
	}
	if got := peerName("pipe:[118497]", nil); got != "pipe" {
		t.Errorf("peerName(pipe): %q", got)
	}
}
