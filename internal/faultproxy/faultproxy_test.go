package faultproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// echo starts a line-echo server and counts the lines it has handled.
func echo(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var handled atomic.Int64
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					handled.Add(1)
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), &handled
}

func roundTrip(c net.Conn, r *bufio.Reader, msg string, timeout time.Duration) (string, error) {
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		return "", err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return line[:len(line)-1], nil
}

func dial(t *testing.T, p *Proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

func TestForwardsAndDelays(t *testing.T) {
	target, _ := echo(t)
	p := Start(t, target)
	c, r := dial(t, p)
	if got, err := roundTrip(c, r, "hello", 5*time.Second); err != nil || got != "hello" {
		t.Fatalf("round trip = %q, %v", got, err)
	}
	p.SetDelay(100 * time.Millisecond)
	start := time.Now()
	if got, err := roundTrip(c, r, "slow", 5*time.Second); err != nil || got != "slow" {
		t.Fatalf("delayed round trip = %q, %v", got, err)
	}
	// Two chunks (request and reply) each wait the delay: a lower bound only.
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Fatalf("delayed round trip took %v, want at least 200ms", took)
	}
}

func TestBlackholeHoldsThenDelivers(t *testing.T) {
	target, handled := echo(t)
	p := Start(t, target)
	c, r := dial(t, p)
	p.Blackhole(true)
	_, err := roundTrip(c, r, "held", 200*time.Millisecond)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("round trip through a blackhole: %v, want a timeout", err)
	}
	if n := handled.Load(); n != 0 {
		t.Fatalf("server handled %d lines through a blackhole", n)
	}
	p.Blackhole(false)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if line, err := r.ReadString('\n'); err != nil || line != "held\n" {
		t.Fatalf("after the blackhole: %q, %v", line, err)
	}
}

func TestDropNextReply(t *testing.T) {
	target, handled := echo(t)
	p := Start(t, target)
	c, r := dial(t, p)
	p.DropNextReply()
	_, err := roundTrip(c, r, "lost", 5*time.Second)
	if err == nil {
		t.Fatal("got a reply that should have been dropped")
	}
	if n := handled.Load(); n != 1 {
		t.Fatalf("server handled %d requests, want 1 (executed, reply lost)", n)
	}
	if !p.ReplyDropped() {
		t.Fatal("ReplyDropped is false after the drop")
	}
	c2, r2 := dial(t, p)
	if got, err := roundTrip(c2, r2, "next", 5*time.Second); err != nil || got != "next" {
		t.Fatalf("a new connection after the drop: %q, %v", got, err)
	}
}

func TestCutAllAndRefuse(t *testing.T) {
	target, _ := echo(t)
	p := Start(t, target)
	c, r := dial(t, p)
	if _, err := roundTrip(c, r, "a", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.CutAll()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadString('\n'); !errors.Is(err, io.EOF) {
		t.Fatalf("read after CutAll: %v, want EOF", err)
	}
	p.Refuse(true)
	c2, r2 := dial(t, p)
	if _, err := roundTrip(c2, r2, "b", 5*time.Second); err == nil {
		t.Fatal("a refused connection answered")
	}
	p.Refuse(false)
	c3, r3 := dial(t, p)
	if got, err := roundTrip(c3, r3, "c", 5*time.Second); err != nil || got != "c" {
		t.Fatalf("after Refuse(false): %q, %v", got, err)
	}
}

func TestDropReplyAfter(t *testing.T) {
	target, handled := echo(t)
	p := Start(t, target)
	c, r := dial(t, p)
	p.DropReplyAfter(1)
	if got, err := roundTrip(c, r, "first", 5*time.Second); err != nil || got != "first" {
		t.Fatalf("the reply let through: %q, %v", got, err)
	}
	if _, err := roundTrip(c, r, "second", 5*time.Second); err == nil {
		t.Fatal("got the reply that should have been dropped")
	}
	if n := handled.Load(); n != 2 || !p.ReplyDropped() {
		t.Fatalf("server handled %d requests, dropped %v; want 2, true", n, p.ReplyDropped())
	}
}
