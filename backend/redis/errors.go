package redis

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
)

// causeError joins a cachekit sentinel (or a context error) with the client
// error that caused it, so that errors.Is finds the sentinel and errors.As
// still finds the client's error.
type causeError struct {
	sentinel error // cachekit.ErrTooLarge, context.DeadlineExceeded, ...
	err      error // what the client returned
}

func (e *causeError) Error() string {
	return e.sentinel.Error() + ": " + e.err.Error()
}

func (e *causeError) Unwrap() []error { return []error{e.sentinel, e.err} }

// isServerError reports whether err is a reply from the Redis server (as
// opposed to a network, pool or context error).
func isServerError(err error) bool {
	var re goredis.Error
	return errors.As(err, &re)
}

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// contextError makes err, returned by the client while running under ctx,
// errors.Is-able as ctx's error when ctx caused it: the client reports a
// deadline that fires on the socket as an "i/o timeout", not as
// context.DeadlineExceeded. Server replies are returned unchanged.
func contextError(ctx context.Context, err error) error {
	if err == nil || isServerError(err) {
		return err
	}
	cerr := ctx.Err()
	if cerr == nil && isTimeout(err) {
		// The socket deadline is the context's deadline, and it can fire a
		// moment before the context's own timer marks ctx done.
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
			cerr = context.DeadlineExceeded
		}
	}
	if cerr == nil || errors.Is(err, cerr) {
		return err
	}
	return &causeError{sentinel: cerr, err: err}
}

// serverMessage returns the text of a server error reply, or "".
func serverMessage(err error) string {
	var re goredis.Error
	if errors.As(err, &re) {
		return re.Error()
	}
	return ""
}

// tooLarge maps the server's "value too large" replies to ErrTooLarge: a
// bulk string over proto-max-bulk-len ("Protocol error: invalid bulk
// length"), or a string that would grow past it.
func tooLarge(err error) error {
	msg := serverMessage(err)
	if strings.Contains(msg, "invalid bulk length") ||
		strings.Contains(msg, "proto-max-bulk-len") ||
		strings.Contains(msg, "exceeds maximum allowed size") {
		return &causeError{sentinel: cachekit.ErrTooLarge, err: err}
	}
	return err
}

// notInteger maps INCRBY's "not an integer" and "would overflow" replies to
// ErrNotInteger.
func notInteger(err error) error {
	msg := serverMessage(err)
	if strings.Contains(msg, "not an integer") || strings.Contains(msg, "overflow") {
		return &causeError{sentinel: cachekit.ErrNotInteger, err: err}
	}
	return err
}

// pipelineRefused reports whether a ClusterClient refused a pipeline before
// sending it because it holds a command that go-redis routes to several
// shards itself (MGET, DEL). It does so when the client was given a
// command-policy resolver (ClusterClient.SetCommandInfoResolver with
// NewDynamicResolver); the same command sent on its own is then split per
// slot by go-redis, so the caller falls back to that.
func pipelineRefused(err error) bool {
	return err != nil && strings.Contains(err.Error(), "cannot pipeline command")
}

// connDropped reports whether err says the server closed or reset the
// connection.
func connDropped(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// connFailure reports whether err says the server could not be reached or
// stopped answering: a network error (a failed dial, a reset, a socket
// timeout), a dropped connection, or no pooled connection in time. Server
// replies and the caller's own context errors are not.
func connFailure(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || connDropped(err) || errors.Is(err, goredis.ErrPoolTimeout)
}

// isClientClosed reports whether err says that the client, or the
// connection a call was using, was closed: go-redis's "client is closed"
// for a call that had no connection yet, net.ErrClosed for one whose
// connection Close closed under it. The cache asks only once its Close has
// begun, so either is its own doing.
func isClientClosed(err error) bool {
	return errors.Is(err, goredis.ErrClosed) || errors.Is(err, net.ErrClosed)
}

// unsent reports whether a failed round trip certainly sent nothing: the
// dial failed, no connection came free, the client was closed, or the
// context ended before a connection was handed over (go-redis then returns
// the context's error itself, unwrapped). Any other failure may have
// happened after the request was written, so a write's outcome is unknown.
func unsent(err error) bool {
	if err == context.Canceled || err == context.DeadlineExceeded {
		return true
	}
	var ce *causeError
	if errors.As(err, &ce) && (ce.err == context.Canceled || ce.err == context.DeadlineExceeded) {
		return true // contextError's wrapping of a bare context error
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return true
	}
	// A TLS handshake that failed (an untrusted certificate, a refusal by
	// the server, a peer that does not speak TLS) ends the dial: no
	// command was written.
	var cve *tls.CertificateVerificationError
	var ae tls.AlertError
	var rhe tls.RecordHeaderError
	if errors.As(err, &cve) || errors.As(err, &ae) || errors.As(err, &rhe) {
		return true
	}
	return errors.Is(err, goredis.ErrPoolTimeout) || errors.Is(err, goredis.ErrClosed)
}

// minBulkLimit is the lowest proto-max-bulk-len a Redis server accepts
// (1mb): a value no larger always fits.
const minBulkLimit = 1 << 20

// writeError explains a failed write of values up to size bytes. A server
// refuses a bulk string over its proto-max-bulk-len with an error reply and
// drops the connection at once, so the client usually sees the connection
// reset rather than the reply. When that happens to a value that could be
// over the limit, writeError asks the server for its limit (CONFIG GET), and
// reports ErrTooLarge if the value is over it (the write was then certainly
// not applied). The client's error stays reachable either way.
func (c *Cache) writeError(ctx context.Context, err error, size int) error {
	if err == nil {
		return nil
	}
	if e := tooLarge(err); e != err || size <= minBulkLimit || !connDropped(err) {
		return e
	}
	var limit int
	probe := c.run(ctx, read, func(ctx context.Context) error {
		vals, err := c.client.ConfigGet(ctx, "proto-max-bulk-len").Result()
		if err == nil {
			limit, err = strconv.Atoi(vals["proto-max-bulk-len"])
		}
		return err
	})
	if probe == nil && limit > 0 && size > limit {
		cause := err
		if ce, ok := err.(*causeError); ok && ce.sentinel == cachekit.ErrUnknownOutcome {
			cause = ce.err // refused for its size: not applied
		}
		return &causeError{
			sentinel: fmt.Errorf("%w: %d bytes, the server's proto-max-bulk-len is %d", cachekit.ErrTooLarge, size, limit),
			err:      cause,
		}
	}
	return err
}
