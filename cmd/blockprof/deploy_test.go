package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"blockprof/internal/testutil"
)

// yamlList returns the items of the block list under the first line that
// reads key (e.g. "args:"), by indentation: enough for our own manifest,
// with no YAML library.
func yamlList(text, key string) []string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) != key {
			continue
		}
		indent := len(l) - len(strings.TrimLeft(l, " "))
		var items []string
		for _, m := range lines[i+1:] {
			t := strings.TrimSpace(m)
			if t == "" || strings.HasPrefix(t, "#") {
				continue
			}
			if len(m)-len(strings.TrimLeft(m, " ")) < indent || !strings.HasPrefix(t, "- ") {
				break
			}
			item := strings.TrimSpace(strings.TrimPrefix(t, "- "))
			items = append(items, strings.Trim(item, `"'`))
		}
		return items
	}
	return nil
}

// deploy/daemonset.yaml: well-formed (by python3's YAML parser where it is
// installed; tabs never), its container arguments are a command line
// `blockprof serve` accepts, and it asks for the least privilege that
// works.
func TestDaemonSetManifest(t *testing.T) {
	path := filepath.Join(testutil.RepoRoot(t), "deploy", "daemonset.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	if strings.Contains(text, "\t") {
		t.Error("tab in the manifest: YAML forbids them for indentation")
	}
	if exec.Command("python3", "-c", "import yaml").Run() == nil {
		out, err := exec.Command("python3", "-c", "import sys, yaml; list(yaml.safe_load_all(open(sys.argv[1])))", path).CombinedOutput()
		if err != nil {
			t.Errorf("YAML does not parse: %v\n%s", err, out)
		}
	} else {
		t.Log("python3 yaml not installed: checked with the line-based reader only")
	}

	args := yamlList(text, "args:")
	if len(args) < 2 || args[0] != "serve" {
		t.Fatalf("container args %q: want serve and its flags", args)
	}
	c := &serveConfig{}
	fs := newServeFlagSet(c)
	if err := fs.Parse(args[1:]); err != nil {
		t.Fatalf("serve rejects the manifest's args %q: %v", args[1:], err)
	}
	if fs.NArg() > 0 || c.cgroup == "" || !strings.HasPrefix(c.push, "http://pyroscope.") {
		t.Errorf("args %q: want --cgroup and --push http://pyroscope.<ns>.svc:4040, no stray argument", args[1:])
	}

	var caps []string
	for _, l := range strings.Split(text, "\n") {
		if t, ok := strings.CutPrefix(strings.TrimSpace(l), "add: ["); ok {
			for _, c := range strings.Split(strings.TrimSuffix(t, "]"), ",") {
				caps = append(caps, strings.Trim(strings.TrimSpace(c), `"`))
			}
		}
	}
	slices.Sort(caps)
	if want := []string{"BPF", "DAC_READ_SEARCH", "PERFMON", "SYS_PTRACE"}; !slices.Equal(caps, want) {
		t.Errorf("capabilities added %q, want %q", caps, want)
	}
	for _, must := range []string{"hostPID: true", "privileged: false", `drop: ["ALL"]`, "path: /sys/kernel/btf", "path: /sys/fs/cgroup"} {
		if !strings.Contains(text, must) {
			t.Errorf("manifest lacks %q", must)
		}
	}
}
