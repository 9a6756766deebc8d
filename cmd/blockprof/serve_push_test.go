package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"blockprof/internal/testutil"

	"github.com/google/pprof/profile"
)

// pyroscopeBin is the Pyroscope v1.8.0 that testdata/pyroscope/build.sh
// caches (.ci/run builds it). Missing: skipped, except under CI.
func pyroscopeBin(t *testing.T) string {
	t.Helper()
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	bin := filepath.Join(cache, "blockprof", "pyroscope-v1.8.0", "pyroscope")
	if _, err := os.Stat(bin); err != nil {
		msg := fmt.Sprintf("no Pyroscope at %s: build it with testdata/pyroscope/build.sh (~2 min)", bin)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

// freePorts returns n distinct free loopback ports.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// startPyroscope runs Pyroscope on loopback only (every address flag,
// else its query path dials the machine's external address) and waits
// for /ready. It returns its base URL.
func startPyroscope(t *testing.T, bin string) string {
	t.Helper()
	dir := t.TempDir()
	ports := freePorts(t, 3)
	const a = "127.0.0.1"
	args := []string{
		"-server.http-listen-address=" + a, fmt.Sprintf("-server.http-listen-port=%d", ports[0]),
		"-server.grpc-listen-address=" + a, fmt.Sprintf("-server.grpc-listen-port=%d", ports[1]),
		"-memberlist.bind-addr=" + a, "-memberlist.advertise-addr=" + a, fmt.Sprintf("-memberlist.bind-port=%d", ports[2]),
		"-usage-stats.enabled=false", "-self-profiling.disable-push=true",
		"-storage.backend=filesystem", "-storage.filesystem.dir=" + filepath.Join(dir, "data-shared"),
		"-pyroscopedb.data-path=" + filepath.Join(dir, "data"),
		"-ingester.lifecycler.addr=" + a, "-distributor.ring.instance-addr=" + a, "-compactor.ring.instance-addr=" + a,
		"-overrides-exporter.ring.instance-addr=" + a, "-query-scheduler.ring.instance-addr=" + a,
		"-store-gateway.sharding-ring.instance-addr=" + a, "-query-frontend.instance-addr=" + a,
	}
	cmd := exec.Command(bin, args...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("pyroscope log (tail):\n%s", tail(logs.String(), 3000))
		}
	})
	url := fmt.Sprintf("http://%s:%d", a, ports[0])
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		resp, err := http.Get(url + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pyroscope not ready after 90s: %v", err)
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// int64s reads JSON int64s, which protobuf JSON writes as strings.
type int64s []int64

func (v *int64s) UnmarshalJSON(b []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	for _, r := range raw {
		n, err := strconv.ParseInt(strings.Trim(string(r), `"`), 10, 64)
		if err != nil {
			return err
		}
		*v = append(*v, n)
	}
	return nil
}

// fnTimes are a profile's delay by function: self (the leaf frame's), and
// total (each frame's, a function counted as often as it is on a stack,
// as a flame graph's nodes add up).
type fnTimes struct{ self, total map[string]int64 }

func newFnTimes() fnTimes { return fnTimes{map[string]int64{}, map[string]int64{}} }

// pyroscopeTimes asks Pyroscope for the merged flame graph of service's
// block delay and returns its times by function.
func pyroscopeTimes(t *testing.T, url, service string, start, end time.Time) fnTimes {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"profileTypeID": "block:delay:nanoseconds:contentions:count",
		"labelSelector": fmt.Sprintf(`{service_name=%q}`, service),
		"start":         start.UnixMilli(), "end": end.UnixMilli(), "maxNodes": 1 << 16,
	})
	resp, err := http.Post(url+"/querier.v1.QuerierService/SelectMergeStacktraces", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var fg struct {
		Flamegraph struct {
			Names  []string `json:"names"`
			Levels []struct {
				Values int64s `json:"values"`
			} `json:"levels"`
		} `json:"flamegraph"`
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("SelectMergeStacktraces: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&fg); err != nil {
		t.Fatal(err)
	}
	ft := newFnTimes()
	for _, l := range fg.Flamegraph.Levels {
		for i := 0; i+3 < len(l.Values); i += 4 { // [x, total, self, name]
			name := fg.Flamegraph.Names[l.Values[i+3]]
			if name == "total" { // the root
				continue
			}
			ft.total[name] += l.Values[i+1]
			if l.Values[i+2] != 0 {
				ft.self[name] += l.Values[i+2]
			}
		}
	}
	return ft
}

// localTimes are the same times from the windows serve wrote.
func localTimes(t *testing.T, ps []*profile.Profile) fnTimes {
	ft := newFnTimes()
	for _, p := range ps {
		delay := sampleIndex(t, p, "delay")
		for _, s := range p.Sample {
			v := s.Value[delay]
			if v == 0 {
				continue
			}
			for i, loc := range s.Location {
				for j, line := range loc.Line {
					ft.total[line.Function.Name] += v
					if i == 0 && j == 0 {
						ft.self[line.Function.Name] += v
					}
				}
			}
		}
	}
	return ft
}

// compareTimes reports every function whose times differ.
func compareTimes(t *testing.T, what string, got, want map[string]int64) (sum int64) {
	t.Helper()
	for fn, v := range want {
		sum += v
		if got[fn] != v {
			t.Errorf("%s of %s: pyroscope %d ns, local %d ns", what, fn, got[fn], v)
		}
	}
	for fn, v := range got {
		if _, ok := want[fn]; !ok {
			t.Errorf("%s of %s: pyroscope %d ns, not in the local windows", what, fn, v)
		}
	}
	return sum
}

// Every window goes to a real Pyroscope v1.8.0, and what it gives back
// for those windows is, function by function, what serve wrote locally.
func TestServePushPyroscope(t *testing.T) {
	testutil.RequireRoot(t)
	url := startPyroscope(t, pyroscopeBin(t))
	bin := testutil.BuildGo(t, filepath.Join(testutil.RepoRoot(t), "testdata/workloads/goblock"))
	w := testutil.Start(t, bin, "-n", "40")
	w.Ready(t)
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", w.PID()))
	if err != nil {
		t.Fatal(err)
	}
	service := fmt.Sprintf("blockprof-test-%d", time.Now().UnixNano())
	s := startServe(t, "--comm", "^"+regexp.QuoteMeta(strings.TrimSpace(string(comm)))+"$",
		"--window", "1s", "--push", url, "--service-name", service)
	s.waitMetric(t, "blockprof_targets_total", "1")
	w.Go(t)
	if _, err := w.Wait(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	s.stop(t) // flushes and pushes the last window
	ws := s.windows(t)
	m := regexp.MustCompile(`after (\d+) windows; pushed (\d+), push drops (\d+)`).FindStringSubmatch(s.stderr.String())
	if m == nil || m[1] != m[2] || m[3] != "0" || m[1] != strconv.Itoa(len(ws)) {
		t.Fatalf("want every window (%d kept) pushed, none dropped: %q", len(ws), m)
	}
	start := time.Unix(0, ws[0].TimeNanos).Add(-time.Second)
	last := ws[len(ws)-1]
	end := time.Unix(0, last.TimeNanos+last.DurationNanos).Add(time.Second)

	want := localTimes(t, ws)
	var got fnTimes
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		got = pyroscopeTimes(t, url, service, start, end)
		if fmt.Sprint(got) == fmt.Sprint(want) || time.Now().After(deadline) {
			break
		}
	}
	sum := compareTimes(t, "self", got.self, want.self)
	compareTimes(t, "total", got.total, want.total)
	t.Logf("%d windows pushed; %d functions, %d leaves; self delay summed: %d ns local, the same per function in pyroscope unless listed above",
		len(ws), len(want.total), len(want.self), sum)
	if sum == 0 || want.total["main.blockRead"] == 0 {
		t.Errorf("the workload's functions are missing: %v", want.total)
	}
}
