// Package testpeer holds network peers for the backends' own tests: real TCP
// servers on 127.0.0.1 that misbehave in ways a cache server can.
package testpeer

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Blackhole is a TCP peer on 127.0.0.1 that accepts connections, reads
// whatever is sent and never replies: a server that hangs. Tests point a
// client at it to check that deadlines fire.
type Blackhole struct {
	ln       net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

// NewBlackhole starts a Blackhole that t's cleanup stops, closing every
// connection it accepted.
func NewBlackhole(t testing.TB) *Blackhole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &Blackhole{ln: ln}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			b.accepted.Add(1)
			b.mu.Lock()
			b.conns = append(b.conns, conn)
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				_, _ = io.Copy(io.Discard, conn)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for _, c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

// Addr returns the host:port the peer listens on.
func (b *Blackhole) Addr() string { return b.ln.Addr().String() }

// Accepted returns how many connections the peer has accepted.
func (b *Blackhole) Accepted() int64 { return b.accepted.Load() }
