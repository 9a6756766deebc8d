//go:build unix

package profiles

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lockedBuffer lets the test read stderr while pprof still writes it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestGoToolPprofHTTP(t *testing.T) {
	_, file := writeFixture(t)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	cmd := goToolPprof(t, "-http="+addr, "-no_browser", file)
	var stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	// Own process group: `go tool` runs pprof as a child, and both must go.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}()

	client := &http.Client{Timeout: 5 * time.Second}
	get := func(path string) (int, string, error) {
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), err
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, tc := range []struct{ path, want string }{
		{"/ui/", "block_read"},
		{"/ui/flamegraph", "handle_conn"},
		{"/ui/top", "pipe_read"},
	} {
		for {
			code, body, err := get(tc.path)
			if err == nil && code == http.StatusOK {
				if !strings.Contains(body, tc.want) {
					t.Errorf("%s lacks %q", tc.path, tc.want)
				}
				break
			}
			select {
			case <-done:
				t.Fatalf("pprof exited: %s", stderr.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: status %d, err %v; stderr:\n%s", tc.path, code, err, stderr.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	want := fmt.Sprintf("Serving web UI on http://%s\n", addr)
	if got := stderr.String(); got != want {
		t.Errorf("stderr %q, want only %q", got, want)
	}
}
