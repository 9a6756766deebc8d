package testutil

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// echoMsgLen is the size of each EchoLoad request.
const echoMsgLen = 64

// EchoLoad drives an echo server at addr ("host:port") for d: conns
// connections, each a closed loop of sending a 64-byte message and reading
// the whole echo back before the next. It returns the round trips completed
// per second over all connections. A connection that fails to dial, or an
// echo that differs from what was sent, is an error; the load still ends
// after about d.
func EchoLoad(addr string, conns int, d time.Duration) (reqPerSec float64, err error) {
	if conns <= 0 {
		return 0, errors.New("EchoLoad: conns must be positive")
	}
	if d <= 0 {
		return 0, errors.New("EchoLoad: duration must be positive")
	}
	cs := make([]net.Conn, 0, conns)
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	for i := 0; i < conns; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return 0, fmt.Errorf("EchoLoad: connection %d: %w", i, err)
		}
		cs = append(cs, c)
	}

	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int64
		first error
	)
	start := time.Now()
	deadline := start.Add(d)
	for i, c := range cs {
		wg.Add(1)
		go func(i int, c net.Conn) {
			defer wg.Done()
			n, err := echoLoop(c, i, deadline)
			mu.Lock()
			total += n
			if err != nil && first == nil {
				first = fmt.Errorf("EchoLoad: connection %d: %w", i, err)
			}
			mu.Unlock()
		}(i, c)
	}
	wg.Wait()
	elapsed := time.Since(start)
	if first != nil {
		return 0, first
	}
	return float64(total) / elapsed.Seconds(), nil
}

// echoLoop sends a message and reads its echo until deadline; it returns
// the round trips completed. A round trip in flight at the deadline gets
// up to a second more (the server may be stalled), then counts as failed.
func echoLoop(c net.Conn, id int, deadline time.Time) (int64, error) {
	msg := make([]byte, echoMsgLen)
	got := make([]byte, echoMsgLen)
	var n int64
	for time.Now().Before(deadline) {
		// Vary the content so a mixed-up echo is noticed.
		for j := range msg {
			msg[j] = byte(int64(id)*31 + n + int64(j))
		}
		if err := c.SetDeadline(deadline.Add(time.Second)); err != nil {
			return n, err
		}
		if _, err := c.Write(msg); err != nil {
			return n, err
		}
		if _, err := io.ReadFull(c, got); err != nil {
			return n, err
		}
		if !bytes.Equal(got, msg) {
			return n, fmt.Errorf("echo %d differs: sent %x, got %x", n, msg, got)
		}
		n++
	}
	return n, nil
}
