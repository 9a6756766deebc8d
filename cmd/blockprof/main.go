// Command blockprof records where live processes block: off-CPU time of
// their threads, with user and kernel stacks, written as pprof.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the recording could not be made
	exitUsage = 2 // bad flags or arguments
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	// Ctrl-C and SIGTERM end a recording cleanly: run returns, the profile
	// is written and every BPF link is closed before exit.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `blockprof finds where live processes block: off-CPU time of every thread,
split into blocked and run-queue time, with user and kernel stacks.

Usage:
  blockprof record [flags] -p PID[,PID...]    profile running processes
  blockprof record [flags] -- CMD [ARGS...]   launch CMD and profile it (and its children)
  blockprof serve [flags] -p PID | --comm RE | --cgroup DIR
                                              profile continuously; serve /debug/pprof/block, push to Pyroscope
  blockprof now -p PID[,PID...]               what every thread waits on right now, and since when
  blockprof report [--top N] [--focus RE] FILE  print the first screen of a saved profile
  blockprof version

Examples:
  sudo blockprof record -p 4242 -d 30s
  sudo blockprof record -p 4242 -t 4250 --min-block 1ms -o api.pb.gz
  sudo blockprof record --format folded -o out.folded -- ./server --port 8080
  sudo blockprof now -p 4242
  go tool pprof -http=:0 blockprof-4242-20261126-101500.pb.gz

Run 'blockprof record --help' for the record flags.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "record":
		return record(ctx, args[1:], stdout, stderr)
	case "serve":
		return serve(ctx, args[1:], stdout, stderr)
	case "now":
		return now(ctx, args[1:], stdout, stderr)
	case "report":
		return report(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "blockprof %s\n", version)
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	case execGateCommand:
		return execGate(args[1:], stderr)
	default:
		fmt.Fprintf(stderr, "blockprof: unknown command %q (try 'blockprof --help')\n", args[0])
		return exitUsage
	}
}
