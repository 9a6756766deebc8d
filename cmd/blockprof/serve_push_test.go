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

// pyroscopeSelf asks Pyroscope for the merged flame graph of service's
// block delay and returns self time by function.
func pyroscopeSelf(t *testing.T, url, service string, start, end time.Time) map[string]int64 {
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
	self := map[string]int64{}
	for _, l := range fg.Flamegraph.Levels {
		for i := 0; i+3 < len(l.Values); i += 4 { // [x, total, self, name]
			self[fg.Flamegraph.Names[l.Values[i+3]]] += l.Values[i+2]
		}
	}
	delete(self, "total")
	return self
}

// localSelf is self delay by leaf function of profiles.
func localSelf(t *testing.T, ps []*profile.Profile) map[string]int64 {
	self := map[string]int64{}
	for _, p := range ps {
		delay := sampleIndex(t, p, "delay")
		for _, s := range p.Sample {
			if len(s.Location) == 0 || len(s.Location[0].Line) == 0 || s.Value[delay] == 0 {
				continue
			}
			self[s.Location[0].Line[0].Function.Name] += s.Value[delay]
		}
	}
	return self
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

	want := localSelf(t, ws)
	var got map[string]int64
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		got = pyroscopeSelf(t, url, service, start, end)
		if fmt.Sprint(got) == fmt.Sprint(want) || time.Now().After(deadline) {
			break
		}
	}
	var wantSum, gotSum int64
	for fn, v := range want {
		wantSum += v
		if got[fn] != v {
			t.Errorf("%s: pyroscope %d ns, local %d ns", fn, got[fn], v)
		}
	}
	for fn, v := range got {
		gotSum += v
		if _, ok := want[fn]; !ok {
			t.Errorf("%s: pyroscope %d ns, not in the local windows", fn, v)
		}
	}
	t.Logf("%d windows, %d functions; total self delay: pyroscope %d ns, local %d ns", len(ws), len(want), gotSum, wantSum)
	if wantSum == 0 {
		t.Error("nothing recorded")
	}
}
