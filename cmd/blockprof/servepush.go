package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/pprof/profile"
)

// pusher sends windows to Grafana Pyroscope through its push API
// (POST /push.v1.PusherService/Push, Connect with JSON). Windows wait in
// a bounded queue; a full queue drops the new window, and a window whose
// retries are exhausted is dropped too, both counted and warned about at
// most once a minute. Profiling never waits for it.
type pusher struct {
	url     string
	labels  []pushLabel
	q       chan []byte
	client  *http.Client
	stats   *serveStats
	warn    func(string)
	ctx     context.Context // cancelled to give up retrying at exit
	cancel  context.CancelFunc
	backoff time.Duration // first retry delay, doubled each time
	tries   int

	mu        sync.Mutex
	lastWarn  time.Time
	unwarned  int64
	closeOnce sync.Once
}

type pushLabel struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

func newPusher(cfg *serveConfig, stats *serveStats, warn func(string)) *pusher {
	ctx, cancel := context.WithCancel(context.Background())
	return &pusher{
		url: strings.TrimSuffix(cfg.push, "/") + "/push.v1.PusherService/Push",
		// Series labels only: no pid or tid (each would make a series).
		labels: []pushLabel{{"__name__", "block"}, {"hostname", cfg.hostname}, {"service_name", cfg.service}},
		q:      make(chan []byte, cfg.queue),
		client: &http.Client{Timeout: 10 * time.Second},
		stats:  stats, warn: warn, ctx: ctx, cancel: cancel,
		backoff: 500 * time.Millisecond, tries: 5,
	}
}

// pushLabels are the sample labels kept in pushed profiles. Pyroscope
// turns every sample label into a series label: pid, tid, thread names,
// targets (paths, ports, futex addresses) and wakers would make a series
// each. What was waited on stays in the stacks' leaf frames.
var pushLabels = map[string]bool{"syscall": true, "kind": true, "state": true}

// forPush is a window's pprof with only pushLabels left on its samples
// (numeric labels dropped too), equal samples merged.
func forPush(b []byte) ([]byte, error) {
	p, err := profile.ParseData(b)
	if err != nil {
		return nil, err
	}
	for _, s := range p.Sample {
		for k := range s.Label {
			if !pushLabels[k] {
				delete(s.Label, k)
			}
		}
		s.NumLabel, s.NumUnit = nil, nil
	}
	p = p.Compact()
	var out bytes.Buffer
	if err := p.Write(&out); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// enqueue queues a window's pprof; never blocks.
func (p *pusher) enqueue(b []byte) {
	b, err := forPush(b)
	if err != nil {
		p.dropped(fmt.Sprintf("prepare: %v", err))
		return
	}
	select {
	case p.q <- b:
	default:
		p.dropped("push queue full")
	}
}

// close ends the queue: run pushes what is left, then returns.
func (p *pusher) close() {
	p.closeOnce.Do(func() {
		close(p.q)
		// Whatever is still retrying 8 s from now gives up.
		time.AfterFunc(8*time.Second, p.cancel)
	})
}

func (p *pusher) run() {
	for b := range p.q {
		var err error
		delay := p.backoff
		for try := 1; try <= p.tries; try++ {
			var retry bool
			if retry, err = p.send(b); err == nil {
				break
			}
			p.stats.push(false)
			if !retry || try == p.tries {
				break
			}
			select {
			case <-time.After(delay):
			case <-p.ctx.Done():
			}
			if p.ctx.Err() != nil {
				break
			}
			delay *= 2
		}
		if err == nil {
			p.stats.push(true)
			continue
		}
		p.dropped(err.Error())
	}
}

// send pushes one window; retry says whether another try may succeed.
func (p *pusher) send(b []byte) (retry bool, err error) {
	body, err := json.Marshal(map[string]any{
		"series": []any{map[string]any{
			"labels":  p.labels,
			"samples": []any{map[string]string{"rawProfile": base64.StdEncoding.EncodeToString(b)}},
		}},
	})
	if err != nil {
		return false, err
	}
	req, err := http.NewRequestWithContext(p.ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return true, fmt.Errorf("push: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 == 2 {
		return false, nil
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(msg)), "\n")
	// Client errors will not mend by themselves, except throttling.
	retry = resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests
	return retry, fmt.Errorf("push: %s: %s", resp.Status, line)
}

// dropped counts a window not pushed and warns, at most once a minute.
func (p *pusher) dropped(why string) {
	total := p.stats.pushDrop()
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.lastWarn.IsZero() && time.Since(p.lastWarn) < time.Minute {
		p.unwarned++
		return
	}
	more := ""
	if p.unwarned > 0 {
		more = fmt.Sprintf(" (and %d more since the last warning)", p.unwarned)
	}
	p.warn(fmt.Sprintf("warning: window not pushed: %s%s; %d dropped in all", why, more, total))
	p.lastWarn, p.unwarned = time.Now(), 0
}
