package profiles

import (
	"time"

	"blockprof/internal/symbolize"
)

// serviceFixture is a hand-built loop-mode recording of a FastAPI service
// under uvicorn: three handlers block the loop (sync redis-py on a
// non-standard port, over two connections; sync urllib to an HTTP
// upstream; a sync FIFO read), one burns CPU, two do it right and are
// only seen on worker threads; plus a Go service whose handler reads a
// slow backend and a C program blocked in libc on a postgres socket.
func serviceFixture() *Profile {
	py := &symbolize.Mapping{File: "[python]", HasFunctions: true, HasFilenames: true, HasLineNumbers: true}
	kern := &symbolize.Mapping{Start: 0xffffffff81000000, Limit: ^uint64(0), File: "[kernel.kallsyms]",
		HasFunctions: true}
	synth := &symbolize.Mapping{File: "[blockprof]", HasFunctions: true}
	interp := &symbolize.Mapping{Start: 0x400000, Limit: 0x800000, File: "/usr/bin/python3.11", HasFunctions: true}
	libc := &symbolize.Mapping{Start: 0x7f0000028000, Limit: 0x7f00001bd000, Offset: 0x28000,
		File: "/usr/lib/x86_64-linux-gnu/libc.so.6", HasFunctions: true}
	goExe := &symbolize.Mapping{Start: 0x400000, Limit: 0x900000, File: "/srv/gosvc/gosvc", HasFunctions: true,
		HasFilenames: true, HasLineNumbers: true}
	cExe := &symbolize.Mapping{Start: 0x400000, Limit: 0x410000, File: "/opt/pgclient/pgclient", HasFunctions: true,
		HasFilenames: true, HasLineNumbers: true}

	const dist = "/usr/lib/python3/dist-packages/"
	const lib = "/usr/lib/python3.11/"
	addr := uint64(0x1000)
	pf := func(name, file string, line int) symbolize.Location {
		addr += 0x10
		return loc(py, addr, fr(name, file, line))
	}
	recvKernel := kframes(kern, 0xffffffff81100000, "__schedule", "schedule", "schedule_timeout",
		"wait_woken", "sk_wait_data", "tcp_recvmsg_locked", "tcp_recvmsg", "inet_recvmsg", "sock_recvmsg",
		"__sys_recvfrom", "__x64_sys_recvfrom", "do_syscall_64")
	readKernel := kframes(kern, 0xffffffff81200000, "__schedule", "schedule", "pipe_read", "vfs_read",
		"ksys_read", "__x64_sys_read", "do_syscall_64")
	// The loop: uvicorn under asyncio, then starlette and fastapi down to
	// the endpoint (all libraries), outermost last.
	loopOuter := []symbolize.Location{
		pf("fastapi.routing.run_endpoint_function", dist+"fastapi/routing.py", 192),
		pf("fastapi.routing.get_request_handler.<locals>.app", dist+"fastapi/routing.py", 250),
		pf("starlette.routing.Route.handle", dist+"starlette/routing.py", 276),
		pf("ExceptionMiddleware.__call__", dist+"starlette/middleware/exceptions.py", 68),
		pf("uvicorn.protocols.http.h11_impl.H11Protocol.run_asgi", dist+"uvicorn/protocols/http/h11_impl.py", 407),
		pf("Task.__step", lib+"asyncio/tasks.py", 267),
		pf("Handle._run", lib+"asyncio/events.py", 80),
		pf("BaseEventLoop._run_once", lib+"asyncio/base_events.py", 1922),
		pf("BaseEventLoop.run_forever", lib+"asyncio/base_events.py", 607),
		pf("Server.serve", dist+"uvicorn/server.py", 68),
		pf("<module>", "/usr/lib/python3/dist-packages/uvicorn/__main__.py", 4),
	}
	interpBelow := []symbolize.Location{
		loc(libc, 0x7f0000114a1c, symbolize.Frame{Function: "__GI___libc_recvfrom"}),
		loc(interp, 0x5a1000, symbolize.Frame{Function: "sock_recv_into"}),
		loc(interp, 0x5a2000, symbolize.Frame{Function: "method_vectorcall_VARARGS_KEYWORDS"}),
	}
	redisStack := func(line int) []symbolize.Location {
		return cat([]symbolize.Location{loc(synth, 0, symbolize.Frame{Function: "[recvfrom tcp …]"})},
			recvKernel, interpBelow, []symbolize.Location{
				pf("SocketIO.readinto", lib+"socket.py", 706),
				pf("SocketBuffer._read_from_socket", dist+"redis/connection.py", 214),
				pf("SocketBuffer.readline", dist+"redis/connection.py", 299),
				pf("PythonParser.read_response", dist+"redis/connection.py", 380),
				pf("Connection.read_response", dist+"redis/connection.py", 824),
				pf("Redis.parse_response", dist+"redis/client.py", 1254),
				pf("Redis.execute_command", dist+"redis/client.py", 1238),
				pf("ListCommands.blpop", dist+"redis/commands/core.py", 2481),
				pf("get_user", "/srv/app/app.py", line),
			}, loopOuter)
	}
	urlStack := cat([]symbolize.Location{loc(synth, 0, symbolize.Frame{Function: "[recvfrom tcp …]"})},
		recvKernel, interpBelow, []symbolize.Location{
			pf("SocketIO.readinto", lib+"socket.py", 706),
			pf("HTTPResponse._read_status", lib+"http/client.py", 279),
			pf("HTTPResponse.begin", lib+"http/client.py", 318),
			pf("HTTPConnection.getresponse", lib+"http/client.py", 1375),
			pf("AbstractHTTPHandler.do_open", lib+"urllib/request.py", 1348),
			pf("OpenerDirector.open", lib+"urllib/request.py", 519),
			pf("urlopen", lib+"urllib/request.py", 216),
			pf("get_profile", "/srv/app/app.py", 131),
		}, loopOuter)
	fifoStack := cat([]symbolize.Location{loc(synth, 0, symbolize.Frame{Function: "[read fifo …]"})},
		readKernel, []symbolize.Location{
			loc(libc, 0x7f0000114b00, symbolize.Frame{Function: "__GI___libc_read"}),
			loc(interp, 0x5a3000, symbolize.Frame{Function: "_Py_read"}),
			pf("get_feed", "/srv/app/app.py", 144),
		}, loopOuter)
	cpuStack := cat([]symbolize.Location{
		loc(interp, 0x5a4000, symbolize.Frame{Function: "_PyEval_EvalFrameDefault"}),
		pf("render_report", "/srv/app/app.py", 160),
		pf("get_report", "/srv/app/app.py", 166),
	}, loopOuter)
	// asyncio.to_thread's worker: the same sync redis call, off the loop.
	workerStack := cat(recvKernel, interpBelow, []symbolize.Location{
		pf("SocketIO.readinto", lib+"socket.py", 706),
		pf("ListCommands.blpop", dist+"redis/commands/core.py", 2481),
		pf("blocking_lookup", "/srv/app/app.py", 101),
		pf("_WorkItem.run", lib+"concurrent/futures/thread.py", 58),
		pf("_worker", lib+"concurrent/futures/thread.py", 83),
		pf("Thread.run", lib+"threading.py", 975),
	})

	goStack := cat(kframes(kern, 0xffffffff81300000, "__schedule", "schedule", "schedule_timeout",
		"sk_wait_data", "tcp_recvmsg", "sock_read_iter", "vfs_read", "ksys_read", "__x64_sys_read"),
		[]symbolize.Location{
			loc(goExe, 0x402e4e, fr("internal/runtime/syscall.Syscall6", "/usr/local/go/src/internal/runtime/syscall/asm_linux_amd64.s", 36)),
			loc(goExe, 0x47b0b0, fr("syscall.read", "/usr/local/go/src/syscall/zsyscall_linux_amd64.go", 736)),
			loc(goExe, 0x48e1c0, fr("internal/poll.(*FD).Read", "/usr/local/go/src/internal/poll/fd_unix.go", 165)),
			loc(goExe, 0x48f000, fr("net.(*netFD).Read", "/usr/local/go/src/net/fd_posix.go", 68),
				fr("net.(*conn).Read", "/usr/local/go/src/net/net.go", 196)),
			loc(goExe, 0x4a0010, fr("main.fetchQuote", "/src/gosvc/main.go", 41)),
			loc(goExe, 0x4a0200, fr("main.quoteHandler", "/src/gosvc/main.go", 55)),
			loc(goExe, 0x4b0000, fr("net/http.HandlerFunc.ServeHTTP", "/usr/local/go/src/net/http/server.go", 2294)),
			loc(goExe, 0x4b1000, fr("net/http.(*conn).serve", "/usr/local/go/src/net/http/server.go", 2092)),
		})
	cStack := cat(recvKernel, []symbolize.Location{
		loc(libc, 0x7f0000114a1c, symbolize.Frame{Function: "__GI___libc_recv"}),
		loc(cExe, 0x401200, fr("wait_result", "/src/pgclient/db.c", 88)),
		loc(cExe, 0x401400, fr("run_query", "/src/pgclient/db.c", 120)),
		loc(cExe, 0x401600, fr("main", "/src/pgclient/main.c", 30)),
		loc(libc, 0x7f0000029d8f, symbolize.Frame{Function: "__libc_start_call_main"}),
	})

	labels := func(sc, target string) map[string]string {
		return map[string]string{"syscall": sc, "target": target}
	}
	const app, goPID, cPID = 4100, 4200, 4300
	ms := time.Millisecond
	p := &Profile{
		Start:    time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		Duration: 20 * time.Second,
		Comments: []string{"blockprof record --loop --stall 10ms -p 4100 -p 4200 -p 4300"},
		Stall:    10 * ms,
		Processes: map[int]Process{
			app:   {PID: app, Comm: "python3", Main: interp},
			goPID: {PID: goPID, Comm: "gosvc", Main: goExe},
			cPID:  {PID: cPID, Comm: "pgclient", Main: cExe},
		},
		Loops: []Loop{{PID: app, TID: app, Comm: "python3", Thread: "python3", Wait: "epoll_wait",
			Iterations: 48213, P50: 61 * time.Microsecond, P99: 212 * ms, Max: 402 * ms, Stalls: 131,
			StallTime: 4391 * ms, Worst: 402 * ms}},
	}
	add := func(s Sample) { p.Samples = append(p.Samples, s) }
	// Ordinary off-CPU samples: redis over two connections (one line),
	// urllib, the FIFO, the to_thread worker, Go and C.
	add(Sample{Stack: redisStack(118), PID: app, TID: app, Comm: "python3", Thread: "python3", State: "S",
		Kind: "blocking", Count: 40, Blocked: 1210 * ms, RunQueue: 2 * ms,
		Labels: labels("recvfrom", "tcp 127.0.0.1:58456->127.0.0.1:42767")})
	add(Sample{Stack: redisStack(118), PID: app, TID: app, Comm: "python3", Thread: "python3", State: "S",
		Kind: "blocking", Count: 38, Blocked: 1190 * ms, RunQueue: 2 * ms,
		Labels: labels("recvfrom", "tcp 127.0.0.1:58470->127.0.0.1:42767")})
	add(Sample{Stack: urlStack, PID: app, TID: app, Comm: "python3", Thread: "python3", State: "S",
		Kind: "blocking", Count: 30, Blocked: 610 * ms, RunQueue: time.Millisecond,
		Labels: labels("recvfrom", "tcp 127.0.0.1:51000->127.0.0.1:8081")})
	add(Sample{Stack: fifoStack, PID: app, TID: app, Comm: "python3", Thread: "python3", State: "S",
		Kind: "blocking", Count: 20, Blocked: 400 * ms,
		Labels: labels("read", "fifo /tmp/fastapi_app-3xk1/feeds/incoming/orders.fifo")})
	add(Sample{Stack: workerStack, PID: app, TID: app + 7, Comm: "python3", Thread: "asyncio_0", State: "S",
		Kind: "blocking", Count: 25, Blocked: 900 * ms,
		Labels: labels("recvfrom", "tcp 127.0.0.1:58490->127.0.0.1:42767")})
	add(Sample{Stack: goStack, PID: goPID, TID: goPID + 3, Comm: "gosvc", Thread: "gosvc", State: "S",
		Kind: "blocking", Count: 12, Blocked: 480 * ms,
		Labels: labels("read", "tcp 127.0.0.1:40112->127.0.0.1:9911")})
	add(Sample{Stack: cStack, PID: cPID, TID: cPID, Comm: "pgclient", Thread: "pgclient", State: "S",
		Kind: "blocking", Count: 9, Blocked: 300 * ms,
		Labels: labels("recvfrom", "tcp 10.0.0.5:50412->10.0.0.9:5432")})
	// Stall samples of the loop thread.
	stall := func(stack []symbolize.Location, kind string, lab map[string]string, v LoopValues) {
		add(Sample{Stack: stack, PID: app, TID: app, Comm: "python3", Thread: "python3", State: "S",
			Kind: kind, Labels: lab, Loop: &v})
	}
	stall(redisStack(118), "blocking", labels("recvfrom", "tcp 127.0.0.1:58456->127.0.0.1:42767"),
		LoopValues{Stalls: 40, Blocked: 1210 * ms, RunQueue: 2 * ms})
	stall(redisStack(118), "blocking", labels("recvfrom", "tcp 127.0.0.1:58470->127.0.0.1:42767"),
		LoopValues{Stalls: 38, Blocked: 1190 * ms, RunQueue: 2 * ms})
	stall(redisStack(121), "blocking", labels("recvfrom", "tcp 127.0.0.1:58470->127.0.0.1:42767"),
		LoopValues{Stalls: 1, Blocked: 30 * ms})
	stall(urlStack, "blocking", labels("recvfrom", "tcp 127.0.0.1:51000->127.0.0.1:8081"),
		LoopValues{Stalls: 30, Blocked: 610 * ms, RunQueue: time.Millisecond})
	stall(fifoStack, "blocking", labels("read", "fifo /tmp/fastapi_app-3xk1/feeds/incoming/orders.fifo"),
		LoopValues{Stalls: 20, Blocked: 400 * ms})
	stall(cpuStack, "on-cpu", nil, LoopValues{Stalls: 2, OnCPU: 600 * ms})
	stall(redisStack(118)[1+len(recvKernel)+len(interpBelow):], "on-cpu", nil, LoopValues{OnCPU: 40 * ms})
	stall([]symbolize.Location{loc(synth, 0, symbolize.Frame{Function: "[on CPU, not sampled]"})}, "on-cpu", nil,
		LoopValues{OnCPU: 3 * ms})
	return p
}
