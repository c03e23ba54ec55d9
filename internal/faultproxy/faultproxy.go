// Package faultproxy is a TCP proxy on 127.0.0.1 for fault-injection tests:
// it sits between a cache client and a real server and, on command, delays
// traffic, holds it (a frozen network), loses one reply after the server has
// executed the request, cuts every connection, or refuses new ones.
//
// It is a test helper: Start ties the proxy's life to a testing.TB.
package faultproxy

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy forwards every connection it accepts to one target address.
type Proxy struct {
	ln     net.Listener
	target string

	delay     atomic.Int64 // nanoseconds each chunk waits, both ways
	refuse    atomic.Bool
	dropReply atomic.Bool
	skipReply atomic.Int64 // replies to let through before the armed drop
	accepted  atomic.Int64

	mu       sync.Mutex
	holding  bool          // Blackhole on
	released chan struct{} // closed when Blackhole turns off
	pairs    map[*pair]struct{}
	closed   bool

	wg sync.WaitGroup
}

type pair struct {
	client, server net.Conn
	once           sync.Once
}

func (p *pair) close() {
	p.once.Do(func() {
		p.client.Close()
		p.server.Close()
	})
}

// Start starts a proxy to target that t's cleanup stops, closing every
// connection.
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, pairs: map[*pair]struct{}{}, released: make(chan struct{})}
	close(p.released)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr returns the host:port clients should dial instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Accepted returns how many client connections the proxy has accepted.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// SetDelay makes every chunk of bytes wait d before it is forwarded, in both
// directions. 0 turns the delay off.
func (p *Proxy) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

// Blackhole, while on, keeps every connection open but forwards nothing in
// either direction: the bytes are held, and delivered when it is turned off,
// as after a network partition heals. New connections are accepted and held
// the same way.
func (p *Proxy) Blackhole(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case on && !p.holding:
		p.holding = true
		p.released = make(chan struct{})
	case !on && p.holding:
		p.holding = false
		close(p.released)
	}
}

// DropNextReply makes the proxy discard the next chunk the server sends and
// close that client's connection: the server has executed the request, but
// its reply is lost.
func (p *Proxy) DropNextReply() { p.DropReplyAfter(0) }

// DropReplyAfter lets the next n chunks the server sends through, then
// drops the one after them as DropNextReply does: with n = 1, a
// read-then-write operation (gets, then cas) loses the reply of its write.
// Each small reply is one chunk when requests are sent one at a time.
func (p *Proxy) DropReplyAfter(n int) {
	p.skipReply.Store(int64(n))
	p.dropReply.Store(true)
}

// ReplyDropped reports whether the reply DropNextReply asked for has been
// dropped yet.
func (p *Proxy) ReplyDropped() bool { return !p.dropReply.Load() }

// Refuse, while on, makes the proxy close every new connection at once, as a
// server that is going down does.
func (p *Proxy) Refuse(on bool) { p.refuse.Store(on) }

// CutAll closes every open connection, both sides.
func (p *Proxy) CutAll() {
	p.mu.Lock()
	pairs := make([]*pair, 0, len(p.pairs))
	for pr := range p.pairs {
		pairs = append(pairs, pr)
	}
	p.mu.Unlock()
	for _, pr := range pairs {
		pr.close()
	}
}

// Close stops the proxy and closes every connection. Start registers it as a
// cleanup; calling it again is harmless.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	if p.holding {
		p.holding = false
		close(p.released)
	}
	p.mu.Unlock()
	p.ln.Close()
	p.CutAll()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		if p.refuse.Load() {
			c.Close()
			continue
		}
		s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		pr := &pair{client: c, server: s}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			pr.close()
			return
		}
		p.pairs[pr] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pump(pr, c, s, false)
		go p.pump(pr, s, c, true)
	}
}

// pump copies src to dst chunk by chunk, applying the faults in force.
// fromServer marks the server-to-client direction, where replies are dropped.
func (p *Proxy) pump(pr *pair, src, dst net.Conn, fromServer bool) {
	defer p.wg.Done()
	defer func() {
		pr.close()
		p.mu.Lock()
		delete(p.pairs, pr)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			released := p.released
			p.mu.Unlock()
			<-released
			if d := time.Duration(p.delay.Load()); d > 0 {
				time.Sleep(d)
			}
			if fromServer && p.dropReply.Load() {
				if p.skipReply.Add(-1) < 0 && p.dropReply.CompareAndSwap(true, false) {
					return
				}
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
