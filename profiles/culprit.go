package profiles

import (
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// The first screen names the culprit as the application sees it: the
// innermost frame of the application's own code, the library call it went
// through, and what that call waited on (a peer, a file, a lock). Which
// frames are the application's is decided per runtime by the rules below;
// the README lists them.

// frameClass is what a frame is, as far as blame goes.
type frameClass int

const (
	classApp       frameClass = iota // the application's own code
	classLibrary                     // third-party: site-/dist-packages, node_modules, Go module cache, vendor
	classStdlib                      // the language's standard library and runtime (Go runtime, CPython's Lib/, node:*)
	classSystem                      // libc and other system libraries, interpreters' and VMs' native code, unknown addresses
	classKernel                      // [kernel.kallsyms]
	classSynthetic                   // frames blockprof made up ([read tcp …], [unknown stack])
)

// runtime is the language a frame belongs to.
type runtime int

const (
	rtNative runtime = iota
	rtPython
	rtNode
	rtGo
)

// classified is one flattened frame with its runtime, class, and for
// library and standard-library frames the package it belongs to.
type classified struct {
	entry
	rt    runtime
	class frameClass
	pkg   string // "redis", "urllib", "net/http", "libc"; "" for application frames
}

// pythonStdlib matches a CPython standard-library path: …/lib/python3.11/….
var pythonStdlib = regexp.MustCompile(`/lib(?:64)?/python\d(?:\.\d+)?t?/`)

// interpreterFiles are native binaries that run someone else's code: their
// frames are the runtime, never the application.
var interpreterFiles = []string{"python", "libpython", "node", "libnode", "ruby", "libruby", "java", "libjvm",
	"perl", "libperl", "php", "pypy", "libpypy"}

// systemDirs hold system libraries (Debian's multiarch directories among
// them): libc, libstdc++, libssl, libpq…
var systemDirs = []string{"/lib/", "/lib64/", "/lib32/", "/usr/lib/", "/usr/lib64/", "/usr/lib32/", "/usr/libexec/"}

// classify decides runtime and class of one frame.
func classify(e entry) classified {
	c := classified{entry: e}
	switch {
	case isKernel(e.loc):
		c.class = classKernel
		return c
	case isSynthetic(e.loc):
		c.class = classSynthetic
		return c
	}
	name, file := "", ""
	if e.frame != nil {
		name, file = funcName(*e.frame), e.frame.File
	}
	switch {
	case strings.HasSuffix(file, ".py") || strings.HasPrefix(file, "<frozen "):
		c.rt = rtPython
		c.class, c.pkg = classifyPython(file)
	case strings.HasPrefix(name, "py::"):
		// python -X perf: "py::qualname:/path/file.py".
		c.rt = rtPython
		if i := strings.Index(name, ":/"); i >= 0 {
			file = name[i+1:]
		}
		c.class, c.pkg = classifyPython(file)
	case jsFrame(name, file):
		c.rt = rtNode
		c.class, c.pkg = classifyNode(name, file)
	case goFrame(name, file):
		c.rt = rtGo
		c.class, c.pkg = classifyGo(name, file)
	default:
		c.rt = rtNative
		c.class, c.pkg = classifyNative(e)
	}
	return c
}

// classifyPython: site-packages and dist-packages are libraries (the
// package is the first directory under them), the interpreter's Lib/ and
// frozen modules are the standard library, everything else is the
// application.
func classifyPython(file string) (frameClass, string) {
	for _, dir := range []string{"/site-packages/", "/dist-packages/"} {
		if i := strings.LastIndex(file, dir); i >= 0 {
			return classLibrary, topModule(file[i+len(dir):])
		}
	}
	if strings.HasPrefix(file, "<frozen ") {
		return classStdlib, strings.TrimSuffix(strings.TrimPrefix(file, "<frozen "), ">")
	}
	if loc := pythonStdlib.FindStringIndex(file); loc != nil {
		return classStdlib, topModule(file[loc[1]:])
	}
	return classApp, ""
}

// topModule is the top-level module of a path relative to a package root:
// "redis/_parsers/socket.py" → "redis", "socket.py" → "socket".
func topModule(rel string) string {
	first, _, _ := strings.Cut(rel, "/")
	first = strings.TrimSuffix(first, ".py")
	if i := strings.IndexAny(first, ".-"); i > 0 && strings.HasSuffix(rel, ".so") {
		first = first[:i] // _hiredis.cpython-311-x86_64-linux-gnu.so
	}
	return first
}

// jsFrame: a V8 frame named from a perf map ("JS:~readSync node:fs:708:18",
// "LazyCompile:*handle /srv/app.js:12") or one with a JavaScript file.
func jsFrame(name, file string) bool {
	for _, p := range []string{"JS:", "LazyCompile:", "Function:", "InterpretedFunction:"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	for _, ext := range []string{".js", ".mjs", ".cjs", ".ts"} {
		if strings.HasSuffix(file, ext) {
			return true
		}
	}
	return false
}

// jsParts splits a perf-map JS name into function and location:
// "JS:~readSync node:fs:708:18" → "readSync", "node:fs:708:18".
func jsParts(name string) (fn, where string) {
	if _, rest, ok := strings.Cut(name, ":"); ok && !strings.HasPrefix(name, "/") {
		name = strings.TrimLeft(rest, "~*^+")
	}
	fn, where, _ = strings.Cut(name, " ")
	if fn == "" {
		fn = "(anonymous)"
	}
	return fn, where
}

// jsLabel shows a perf-map JS frame like the others: "JS:~runSleep
// /srv/loop.js:60:18" → "runSleep (loop.js:60)".
func jsLabel(name string) string {
	fn, where := jsParts(name)
	if where == "" {
		return fn
	}
	file, pos, _ := strings.Cut(path.Base(where), ":")
	line, _, _ := strings.Cut(pos, ":")
	if line == "" {
		return fmt.Sprintf("%s (%s)", fn, file)
	}
	return fmt.Sprintf("%s (%s:%s)", fn, file, line)
}

// shortName is a caller as shown after "←": its function's name (a JS
// frame without its location).
func shortName(e entry) string {
	if c := classify(e); c.rt == rtNode {
		fn, _ := jsParts(e.name())
		return fn
	}
	return e.name()
}

// classifyNode: node_modules are libraries (the package, with its
// @scope), Node's built-in modules ("node:fs", and before Node 16
// relative names like "internal/fs/utils.js") the standard library.
func classifyNode(name, file string) (frameClass, string) {
	where := file
	if where == "" {
		_, where = jsParts(name)
	}
	if i := strings.LastIndex(where, "/node_modules/"); i >= 0 {
		rest := where[i+len("/node_modules/"):]
		parts := strings.SplitN(rest, "/", 3)
		if strings.HasPrefix(parts[0], "@") && len(parts) > 1 {
			return classLibrary, parts[0] + "/" + parts[1]
		}
		return classLibrary, parts[0]
	}
	if strings.HasPrefix(where, "node:") {
		mod, _, _ := strings.Cut(strings.TrimPrefix(where, "node:"), ":")
		return classStdlib, mod
	}
	if where != "" && !strings.HasPrefix(where, "/") && !strings.HasPrefix(where, "file://") {
		mod, _, _ := strings.Cut(where, ":")
		return classStdlib, strings.TrimSuffix(mod, ".js")
	}
	return classApp, ""
}

// goStdAsm are packages whose assembly (.s) frames Go binaries carry.
var goStdAsm = []string{"runtime.", "internal/", "syscall.", "crypto/", "math/", "sync/", "reflect.", "aeshash"}

// goFrame: a frame with a .go file, or Go assembly of the runtime and
// standard library.
func goFrame(name, file string) bool {
	if strings.HasSuffix(file, ".go") {
		return true
	}
	if strings.HasSuffix(file, ".s") {
		for _, p := range goStdAsm {
			if strings.HasPrefix(name, p) {
				return true
			}
		}
	}
	return false
}

// goPackage is the import path of a Go symbol:
// "net/http.(*conn).serve" → "net/http", "main.main" → "main".
func goPackage(name string) string {
	slash := strings.LastIndex(name, "/")
	dot := strings.Index(name[slash+1:], ".")
	if dot < 0 {
		return name
	}
	return name[:slash+1+dot]
}

// classifyGo: package main and modules built from the working tree are
// the application; a package path without a dot in its first element is
// the standard library (runtime, net/http, internal/poll, vendor/…);
// anything from the module cache (…/pkg/mod/…, or path@version with
// -trimpath) or a vendor directory is a library.
func classifyGo(name, file string) (frameClass, string) {
	pkg := goPackage(name)
	first, _, _ := strings.Cut(pkg, "/")
	switch {
	case pkg == "main":
		return classApp, ""
	case !strings.Contains(first, "."):
		return classStdlib, pkg
	case strings.Contains(file, "/pkg/mod/") || strings.Contains(file, "@v") || strings.Contains(file, "/vendor/"):
		return classLibrary, pkg
	}
	return classApp, ""
}

// classifyNative: the program's own executable and libraries are the
// application; libraries in the system directories, the dynamic loader,
// the vDSO, interpreters and VMs (python3.11, node, libpython…), and
// addresses outside any mapping are not. Shared objects installed in a
// Python site-/dist-packages or node_modules are libraries.
func classifyNative(e entry) (frameClass, string) {
	m := e.loc.Mapping
	if m == nil || m.File == "" || strings.HasPrefix(m.File, "[") || strings.HasPrefix(m.File, "//anon") {
		return classSystem, ""
	}
	base := path.Base(m.File)
	for _, dir := range []string{"/site-packages/", "/dist-packages/"} {
		if i := strings.LastIndex(m.File, dir); i >= 0 {
			return classLibrary, topModule(m.File[i+len(dir):])
		}
	}
	if i := strings.LastIndex(m.File, "/node_modules/"); i >= 0 {
		pkg, _, _ := strings.Cut(m.File[i+len("/node_modules/"):], "/")
		return classLibrary, pkg
	}
	for _, p := range interpreterFiles {
		if strings.HasPrefix(base, p) {
			return classSystem, libName(base)
		}
	}
	for _, p := range wrapperFiles {
		if strings.HasPrefix(base, p) {
			return classSystem, libName(base)
		}
	}
	for _, d := range systemDirs {
		if strings.HasPrefix(m.File, d) {
			return classSystem, libName(base)
		}
	}
	return classApp, ""
}

// libName shortens a shared object's file name: "libc.so.6" → "libc",
// "libpq.so.5.15" → "libpq".
func libName(base string) string {
	if i := strings.Index(base, ".so"); i > 0 {
		return base[:i]
	}
	return base
}

// culprit is where a sample's time goes on the first screen: the
// innermost application frame, the application frames that called it,
// the library call it made, and what the thread waited on.
type culprit struct {
	app     string   // "get_user (app.py:118)", or the telling frame when no frame is the application's
	appFunc string   // the application frame's function, lines apart
	found   bool     // app is an application frame
	callers []entry  // application frames further out, innermost first (at most 2)
	call    string   // "redis blpop", "net.(*conn).Read", "libc read"; "" when the app called the kernel directly
	syscall string   // from the syscall label
	peer    string   // what it waited on, one name per peer: "tcp → 127.0.0.1:6379 (redis)"
	kernel  string   // "read → pipe_read" when there is no target label
	appE    *entry   // the application (or telling) frame
	pkgs    []string // packages of the library frames inside the application frame
}

// culpritOf finds the culprit of one sample.
func culpritOf(s Sample) culprit {
	var es []classified
	for _, e := range flatten(s.Stack) {
		es = append(es, classify(e))
	}
	c := culprit{syscall: s.Labels["syscall"]}
	if r := s.Labels["wait_reason"]; r != "" {
		// A goroutine's park: its wait reason stands where a thread's
		// syscall would ("[IO wait tcp → 127.0.0.1:6379]", "[chan receive]").
		c.syscall = r
	}
	app := -1
	for i, e := range es {
		if e.class == classApp {
			app = i
			break
		}
	}
	if app < 0 {
		// No application frame (a Go runtime thread, a kernel thread, a
		// stack that stops in libc): the telling frames say what there is.
		tell := tellingEntries(s, 3)
		if len(tell) > 0 {
			c.app = frameLabel(tell[0])
			c.appFunc = tell[0].name()
			c.appE = &tell[0]
			c.callers = tell[1:]
		} else {
			c.app = "(no user stack)"
			c.appFunc = c.app
		}
	} else {
		a := es[app]
		c.found = true
		c.app = frameLabel(a.entry)
		if a.rt == rtNode {
			c.app = jsLabel(a.name())
		}
		c.appFunc = a.name()
		c.appE = &a.entry
		// Callers: application frames right outside it, stepping over the
		// runtime's own native frames (the interpreter between two script
		// frames) but stopping at a library frame (a framework's dispatch).
		for _, e := range es[app+1:] {
			if len(c.callers) == 2 {
				break
			}
			if e.class == classSystem && e.rt == rtNative && a.rt != rtNative {
				continue
			}
			if e.class != classApp {
				break
			}
			c.callers = append(c.callers, e.entry)
		}
		c.call = callOf(es[:app], a.rt)
		for _, e := range es[:app] {
			if e.class == classLibrary || e.class == classStdlib {
				c.pkgs = append(c.pkgs, e.pkg)
			}
		}
	}
	// A target names what a syscall waited on; without the syscall label
	// it is not one.
	if c.syscall != "" {
		c.peer = peerName(s.Labels["target"], c.pkgs)
	}
	if c.peer == "" {
		c.kernel = KernelWhere(s)
	}
	return c
}

// callOf names the library call an application frame made: the frame it
// called, when that is a library or standard-library frame of its own
// runtime (or a native library), e.g. "redis blpop", "urllib urlopen",
// "net.(*conn).Read", "libc read". inner are the frames inside the
// application frame, leaf first.
func callOf(inner []classified, rt runtime) string {
	for i := len(inner) - 1; i >= 0; i-- {
		e := inner[i]
		switch {
		case e.class == classKernel || e.class == classSynthetic:
			return ""
		case e.rt != rt && rt != rtNative && e.class == classSystem:
			// The interpreter's own C between the script frame and the
			// leaf (cfunction_vectorcall_O, time_sleep): a builtin.
			continue
		case e.class == classApp:
			return ""
		}
		return callName(e)
	}
	return ""
}

// callName is how a library frame is shown after "→".
func callName(e classified) string {
	name := e.name()
	switch e.rt {
	case rtPython:
		if strings.HasPrefix(name, "py::") {
			name, _, _ = strings.Cut(strings.TrimPrefix(name, "py::"), ":")
		}
		return e.pkg + " " + shortQualname(name)
	case rtNode:
		fn, _ := jsParts(name)
		return e.pkg + " " + fn
	case rtGo:
		// The last element of the import path, as code calls it:
		// "net/http.(*Client).Do" → "http.(*Client).Do"; a major
		// version suffix keeps its module: "go-redis/v9.(*Client).Get".
		pkg := goPackage(name)
		short := path.Base(pkg)
		if len(short) >= 2 && short[0] == 'v' && isDigits(short[1:]) && strings.Contains(pkg, "/") {
			short = path.Base(path.Dir(pkg)) + "/" + short
		}
		return short + name[len(pkg):]
	}
	if e.frame == nil {
		return name
	}
	return e.pkg + " " + cleanCSymbol(name)
}

// shortQualname keeps a Python qualified name's last part, with its class
// when the method alone says nothing ("Client.__init__").
func shortQualname(q string) string {
	parts := strings.Split(q, ".")
	last := parts[len(parts)-1]
	if len(parts) > 1 && (strings.HasPrefix(last, "__") || strings.HasPrefix(last, "<")) {
		return parts[len(parts)-2] + "." + last
	}
	return last
}

// cleanCSymbol drops glibc's internal prefixes and symbol versions:
// "__GI___libc_read" → "read", "pthread_cond_wait@@GLIBC_2.3.2" →
// "pthread_cond_wait".
func cleanCSymbol(name string) string {
	name, _, _ = strings.Cut(name, "@")
	name = strings.TrimPrefix(name, "__GI_")
	for _, p := range []string{"___libc_", "__libc_", "__"} {
		if strings.HasPrefix(name, p) && len(name) > len(p) {
			return name[len(p):]
		}
	}
	return name
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// wellKnownPorts name the service behind a peer port.
var wellKnownPorts = map[int]string{
	21: "ftp", 22: "ssh", 25: "smtp", 53: "dns", 80: "http", 389: "ldap", 443: "https", 587: "smtp",
	636: "ldaps", 1433: "mssql", 1521: "oracle", 2181: "zookeeper", 2379: "etcd", 3306: "mysql",
	4222: "nats", 5432: "postgres", 5672: "amqp", 6379: "redis", 6432: "pgbouncer", 8125: "statsd",
	9042: "cassandra", 9092: "kafka", 9200: "elasticsearch", 11211: "memcached", 27017: "mongodb",
}

// clientLibraries name the service a client library talks to, by the
// package seen on the stack (Python, Node, Go import paths).
var clientLibraries = []struct{ pkg, service string }{
	{"redis", "redis"}, {"aioredis", "redis"}, {"hiredis", "redis"}, {"ioredis", "redis"},
	{"github.com/redis/go-redis", "redis"}, {"github.com/go-redis/redis", "redis"},
	{"github.com/gomodule/redigo", "redis"},
	{"psycopg2", "postgres"}, {"psycopg", "postgres"}, {"asyncpg", "postgres"}, {"pg8000", "postgres"},
	{"pg", "postgres"}, {"github.com/jackc/pgx", "postgres"}, {"github.com/lib/pq", "postgres"},
	{"libpq", "postgres"},
	{"pymysql", "mysql"}, {"MySQLdb", "mysql"}, {"mysql", "mysql"}, {"mysql2", "mysql"},
	{"github.com/go-sql-driver/mysql", "mysql"}, {"libmysqlclient", "mysql"}, {"libmariadb", "mysql"},
	{"pymemcache", "memcached"}, {"memcache", "memcached"}, {"github.com/bradfitz/gomemcache", "memcached"},
	{"pymongo", "mongodb"}, {"mongodb", "mongodb"}, {"go.mongodb.org/mongo-driver", "mongodb"},
	{"kafka", "kafka"}, {"confluent_kafka", "kafka"}, {"kafkajs", "kafka"},
	{"requests", "http"}, {"urllib3", "http"}, {"httpx", "http"}, {"aiohttp", "http"}, {"urllib", "http"},
	{"http", "http"}, {"https", "https"}, {"undici", "http"}, {"axios", "http"}, {"node-fetch", "http"},
	{"net/http", "http"}, {"libcurl", "http"},
}

// serviceOf names the service behind a socket peer: by its port when well
// known, else by the client library on the stack (innermost package that
// names one).
func serviceOf(port int, pkgs []string) string {
	if s, ok := wellKnownPorts[port]; ok {
		return s
	}
	for _, p := range pkgs {
		for _, cl := range clientLibraries {
			if p == cl.pkg || strings.HasPrefix(p, cl.pkg+"/") {
				return cl.service
			}
		}
	}
	return ""
}

// ephemeralLow is where Linux starts handing out local ports
// (net.ipv4.ip_local_port_range, 32768 by default).
const ephemeralLow = 32768

// peerName is a target as the first screen groups it: a socket by its
// peer, not by connection ("tcp 10.0.0.5:51234->10.0.0.7:6379" →
// "tcp → 10.0.0.7:6379 (redis)"); the server side of a connection (a
// fixed local port, an ephemeral remote one) by its own address ("tcp
// 10.0.0.5:8000 ← clients"); anything else as recorded. pkgs are the
// packages on the stack, to name a service on an unusual port.
func peerName(target string, pkgs []string) string {
	if strings.HasPrefix(target, "pipe:[") {
		return "pipe" // one per child or per connection, like a port
	}
	kind, addr, ok := strings.Cut(target, " ")
	if !ok || !isSocketKind(kind) {
		return target
	}
	local, remote, conn := strings.Cut(addr, "->")
	if !conn {
		if strings.HasPrefix(addr, "->") {
			remote = strings.TrimPrefix(addr, "->")
		} else {
			return target
		}
	}
	if strings.HasPrefix(kind, "unix") {
		if remote == "" {
			return target
		}
		return kind + " → " + remote
	}
	lp, rp := portOf(local), portOf(remote)
	if lp > 0 && lp < ephemeralLow && rp >= ephemeralLow {
		out := kind + " " + local + " ← clients"
		if svc := serviceOf(lp, nil); svc != "" {
			out += " (" + svc + ")"
		}
		return out
	}
	out := kind + " → " + remote
	if svc := serviceOf(rp, pkgs); svc != "" {
		out += " (" + svc + ")"
	}
	return out
}

func isSocketKind(kind string) bool {
	switch kind {
	case "tcp", "tcp6", "udp", "udp6", "unix", "unix-dgram", "unix-seqpacket", "sctp", "sctp6":
		return true
	}
	return strings.HasPrefix(kind, "unix")
}

// portOf is the port of "1.2.3.4:80" or "[::1]:80", 0 when there is none.
func portOf(addr string) int {
	i := strings.LastIndex(addr, ":")
	if i < 0 || strings.HasSuffix(addr, "]") {
		return 0
	}
	p, err := strconv.Atoi(addr[i+1:])
	if err != nil {
		return 0
	}
	return p
}

// waitedOn is the bracketed end of a culprit line: "[recvfrom tcp →
// 127.0.0.1:6379 (redis)]", "[sleep 15ms]", "[read → pipe_read]"; ""
// when nothing is known.
func (c *culprit) waitedOn() string {
	if c.peer != "" {
		switch kind, _, _ := strings.Cut(c.peer, " "); kind {
		case "sleep", "poll", "futex", "child":
			return "[" + c.peer + "]"
		}
		if c.syscall != "" {
			return "[" + c.syscall + " " + c.peer + "]"
		}
		return "[" + c.peer + "]"
	}
	if c.kernel != "" {
		return "[" + c.kernel + "]"
	}
	return ""
}

// key groups samples into one first-screen line: one line per
// application frame, call and peer (the syscalls it took are listed
// together).
func (c *culprit) key() string {
	return c.app + "\x00" + c.call + "\x00" + c.peer + "\x00" + c.kernel
}
