package memcached

import (
	"context"
	"errors"
	"net"
	"syscall"
)

// errStaleConn reports a pooled connection found closed or reset by the
// server before a request was written to it: nothing was sent.
var errStaleConn = errors.New("memcached: pooled connection was closed by the server (request not sent)")

// staleError is errStaleConn with what the check saw.
type staleError struct{ cause error }

func (e *staleError) Error() string {
	if e.cause == nil {
		return errStaleConn.Error()
	}
	return errStaleConn.Error() + ": " + e.cause.Error()
}

func (e *staleError) Unwrap() []error {
	if e.cause == nil {
		return []error{errStaleConn}
	}
	return []error{errStaleConn, e.cause}
}

// DialFunc is the type of memcache.Client.DialContext.
type DialFunc = func(ctx context.Context, network, address string) (net.Conn, error)

// LivenessDialer returns a dial function for memcache.Client.DialContext
// that dials with dial (nil: a net.Dialer) and checks a connection taken
// from the client's pool before each request is written to it: a
// connection the server has closed or reset (after a server restart every
// idle connection is like that) fails the request with nothing sent,
// instead of sending it into a dead socket and reading EOF. The Cache
// recognises that failure and resends the request on a fresh connection,
// which is safe for writes too, since the server never saw it. The check is
// one non-blocking peek at the socket (a system call) per reused
// connection, on Linux, macOS and the BSDs; elsewhere, and on connections
// that are not plain TCP or Unix sockets (TLS), nothing is checked.
//
// Caches opened from a URL use it. For a client you build yourself:
//
//	client.DialContext = memcached.LivenessDialer(client.DialContext)
func LivenessDialer(dial DialFunc) DialFunc {
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		nc, err := dial(ctx, network, address)
		if err != nil || !canCheck {
			return nc, err
		}
		sc, ok := nc.(syscall.Conn)
		if !ok {
			return nc, nil
		}
		raw, err := sc.SyscallConn()
		if err != nil {
			return nc, nil
		}
		return &checkedConn{Conn: nc, raw: raw}, nil
	}
}

// checkedConn checks that the server has not closed the connection before
// the first write of each request after the first. gomemcache uses a
// connection from one goroutine at a time and hands it over through its
// pool's mutex, so the state needs no lock.
type checkedConn struct {
	net.Conn
	raw  syscall.RawConn
	read bool // a reply was read since the last write: the next write starts a new request
}

func (c *checkedConn) Read(p []byte) (int, error) {
	c.read = true
	return c.Conn.Read(p)
}

func (c *checkedConn) Write(p []byte) (int, error) {
	if c.read {
		c.read = false
		if err := peekAlive(c.raw); err != nil {
			return 0, &staleError{cause: err}
		}
	}
	return c.Conn.Write(p)
}
