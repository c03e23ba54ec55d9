package redis

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
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
