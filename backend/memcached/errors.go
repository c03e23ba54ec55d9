package memcached

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachekit/cachekit"
)

// causeError joins a cachekit sentinel (or a context error) with the error
// that caused it, so that errors.Is finds both and errors.As still finds
// the client's error.
type causeError struct {
	sentinel error
	err      error
}

func (e *causeError) Error() string { return e.sentinel.Error() + ": " + e.err.Error() }

func (e *causeError) Unwrap() []error { return []error{e.sentinel, e.err} }

// ctxError reports a client timeout caused by a done ctx as ctx's error.
func ctxError(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil {
		return err
	}
	if isTimeout(err) && !errors.Is(err, ctx.Err()) {
		return &causeError{sentinel: ctx.Err(), err: err}
	}
	return err
}

func isTimeout(err error) bool {
	var cte *memcache.ConnectTimeoutError
	if errors.As(err, &cte) {
		return true
	}
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// clientError translates a gomemcache error: a server's "object too large"
// reply becomes ErrTooLarge (still wrapping the client's error).
func clientError(err error) error {
	if err != nil && strings.Contains(err.Error(), "object too large") {
		return &causeError{sentinel: cachekit.ErrTooLarge, err: err}
	}
	return err
}

// unknownOutcome marks the error of a write whose request may have reached
// the server although no reply came back.
func unknownOutcome(err error) error {
	return &causeError{sentinel: cachekit.ErrUnknownOutcome, err: err}
}

// fate is what a failed request tells about the request and the server.
type fate int

const (
	// answered: the server replied (a miss, NOT_STORED, a server error
	// are replies), or the error says nothing about the connection.
	answered fate = iota
	// notSent: the connection failed before the request was complete on
	// the wire (a dial failed, a pooled connection was found dead, a write
	// failed), so the server cannot have executed it.
	notSent
	// lost: the connection failed after the request may have been sent
	// (EOF or a timeout while waiting for the reply).
	lost
)

// classify tells what err, returned by one gomemcache request, means.
func classify(err error) fate {
	if err == nil {
		return answered
	}
	if errors.Is(err, errStaleConn) {
		return notSent
	}
	var ns *notSentError
	if errors.As(err, &ns) {
		return notSent
	}
	var cte *memcache.ConnectTimeoutError
	if errors.As(err, &cte) {
		return notSent
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		switch oe.Op {
		case "dial", "write":
			// A request is executed only once all of it has arrived; a
			// failed write means its tail never left.
			return notSent
		}
		return lost
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return lost
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return lost
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return lost
	}
	return answered
}

// deadConn reports whether err shows a connection that the server had
// already closed or reset: after a server restart every idle connection of
// the pool is like that, and a fresh one would work.
func deadConn(err error) bool {
	return errors.Is(err, errStaleConn) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED)
}

// keyError reports a bad key among several.
func keyError(op, key string, err error) error {
	return cachekit.WrapError(op, key, err)
}

// errGenerationKey reports a generation key holding something else than a
// number.
func errGenerationKey(genKey string, v []byte, err error) error {
	return fmt.Errorf("memcached: namespace generation key %q holds %q, not a number: %w", genKey, v, err)
}

// unreadError reports the servers a multi-key get could not read, and their
// server keys; what the other servers answered was read.
type unreadError struct {
	servers []*serverError // one per failed server, in the order they failed
	keys    map[string]bool
}

func (e *unreadError) add(addr string, keys []string, err error) {
	for _, k := range keys {
		e.keys[k] = true
	}
	for _, s := range e.servers {
		if s.addr == addr {
			s.err = err // a later attempt's error
			return
		}
	}
	e.servers = append(e.servers, &serverError{addr: addr, err: err})
}

func (e *unreadError) Error() string { return "memcached: servers not read" }

// partialError is GetMany's error when some servers of the pool answered
// and others did not: it says which servers and how many keys it could not
// read, and wraps cachekit.ErrUnavailable and each server's error.
type partialError struct {
	unread, total int // cachekit keys
	servers       []*serverError
}

func (e *partialError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d of %d keys not read (the map holds the others that are present):", cachekit.ErrUnavailable, e.unread, e.total)
	for i, s := range e.servers {
		if i > 0 {
			b.WriteByte(';')
		}
		fmt.Fprintf(&b, " server %s: %v", s.addr, s.err)
	}
	return b.String()
}

func (e *partialError) Unwrap() []error {
	errs := []error{cachekit.ErrUnavailable}
	for _, s := range e.servers {
		errs = append(errs, s.err)
	}
	return errs
}
