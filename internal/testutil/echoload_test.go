package testutil

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// echoServer serves echo on a loopback port until the test ends; with
// corrupt, it flips the first byte of every reply.
func echoServer(t *testing.T, corrupt bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				if !corrupt {
					io.Copy(c, c)
					return
				}
				buf := make([]byte, 256)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					buf[0] ^= 0xff
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestEchoLoad(t *testing.T) {
	addr := echoServer(t, false)
	const d = 300 * time.Millisecond
	start := time.Now()
	rate, err := EchoLoad(addr, 4, d)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < d || el > d+2*time.Second {
		t.Errorf("EchoLoad took %v for a %v load", el, d)
	}
	// Loopback round trips take tens of microseconds: even a slow machine
	// does far more than 100 a second.
	if rate < 100 {
		t.Errorf("%.0f round trips/s against a local echo server", rate)
	}
	t.Logf("%.0f round trips/s over 4 connections", rate)
}

func TestEchoLoadErrors(t *testing.T) {
	if _, err := EchoLoad(echoServer(t, true), 2, 100*time.Millisecond); err == nil || !strings.Contains(err.Error(), "differs") {
		t.Errorf("corrupted echo: err = %v", err)
	}
	// A port nobody listens on: take one, then close it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if _, err := EchoLoad(addr, 1, 100*time.Millisecond); err == nil {
		t.Error("no server: no error")
	}
	if _, err := EchoLoad(addr, 0, time.Second); err == nil {
		t.Error("0 connections: no error")
	}
}
