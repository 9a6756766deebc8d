package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"

	"github.com/spf13/pflag"

	"blockprof/profiles"
)

const reportUsage = `Usage:
  blockprof report [flags] FILE

Prints the first screen of a saved pprof profile (one 'blockprof record'
wrote, or any block profile), as record printed it: application frames,
the calls they made, what they waited on, and the event-loop section.
The file does not keep the syscall-and-target table.

Flags:
`

// report prints the first screen of a saved profile.
func report(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("report", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	top := fs.Int("top", 10, "stacks shown")
	focus := fs.String("focus", "", "only samples with a frame (function or file) or target matching this regular expression")
	width := fs.Int("width", 0, "line width (default: the terminal's, else $COLUMNS, else 120)")
	fs.Usage = func() {
		fmt.Fprint(stdout, reportUsage)
		fmt.Fprint(stdout, fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK // pflag printed the usage already
		}
		fmt.Fprintf(stderr, "blockprof: report: %v\n", err)
		return exitUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "blockprof: report takes one profile file, got %d arguments (try 'blockprof report --help')\n", fs.NArg())
		return exitUsage
	}
	var re *regexp.Regexp
	if *focus != "" {
		var err error
		if re, err = regexp.Compile(*focus); err != nil {
			fmt.Fprintf(stderr, "blockprof: --focus: %v\n", err)
			return exitUsage
		}
	}
	file := fs.Arg(0)
	f, err := os.Open(file)
	if err != nil {
		fmt.Fprintf(stderr, "blockprof: %v\n", err)
		return exitError
	}
	defer f.Close()
	p, err := profiles.ReadPprof(f)
	if err != nil {
		fmt.Fprintf(stderr, "blockprof: %s: %v\n", file, err)
		return exitError
	}
	if re != nil {
		p = focusSamples(p, re)
	}
	w := *width
	if w <= 0 {
		w = profiles.TerminalWidth(stdout)
	}
	profiles.WriteSummary(stdout, p, profiles.SummaryOptions{Top: *top, File: file, Width: w})
	return exitOK
}

// focusSamples keeps the samples with a frame whose function or file, or
// whose target label, matches re.
func focusSamples(p *profiles.Profile, re *regexp.Regexp) *profiles.Profile {
	out := *p
	out.Samples = nil
	for _, s := range p.Samples {
		if re.MatchString(s.Labels["target"]) && s.Labels["target"] != "" {
			out.Samples = append(out.Samples, s)
			continue
		}
	frames:
		for _, loc := range s.Stack {
			for _, fr := range loc.Frames {
				if re.MatchString(fr.Function) || (fr.File != "" && re.MatchString(fr.File)) {
					out.Samples = append(out.Samples, s)
					break frames
				}
			}
		}
	}
	return &out
}
