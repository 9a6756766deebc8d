package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
)

// execGateCommand is the hidden sub-command that `record -- CMD` starts in
// place of CMD: it waits until the BPF programs are attached, then execs CMD
// under the same PID, so not one of CMD's blocking calls is missed.
const execGateCommand = "__exec-gate"

// startGated starts CMD behind the gate and returns it with the function
// that opens the gate.
func startGated(command []string, stdout, stderr io.Writer) (*exec.Cmd, func() error, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("find own executable: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(self, append([]string{execGateCommand, "--"}, command...)...)
	cmd.Stdin = os.Stdin
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.ExtraFiles = []*os.File{r} // fd 3 in the child
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, nil, fmt.Errorf("start %s: %w", command[0], err)
	}
	r.Close()
	open := func() error {
		defer w.Close()
		_, err := w.Write([]byte{1})
		return err
	}
	return cmd, open, nil
}

// execGate runs in the child: wait for the parent's byte on fd 3, then exec.
func execGate(args []string, stderr io.Writer) int {
	if len(args) < 2 || args[0] != "--" {
		fmt.Fprintln(stderr, "blockprof: internal command used wrongly")
		return exitUsage
	}
	gate := os.NewFile(3, "gate")
	var b [1]byte
	if n, _ := gate.Read(b[:]); n != 1 {
		return exitError // parent gave up (attach failed): do not run CMD unprofiled
	}
	gate.Close()
	path, err := exec.LookPath(args[1])
	if err != nil {
		fmt.Fprintf(stderr, "blockprof: %v\n", err)
		return 127
	}
	err = syscall.Exec(path, args[1:], os.Environ())
	fmt.Fprintf(stderr, "blockprof: exec %s: %v\n", args[1], err)
	return 126
}
