package cachekit

import (
	"errors"
	"strconv"
)

// Sentinel errors. Check them with errors.Is: backends and wrappers wrap them
// (usually in an [*Error]) so that the operation and key travel with them.
var (
	// ErrNotFound reports a miss: the key is absent or has expired.
	ErrNotFound = errors.New("cachekit: not found")
	// ErrExists reports that Add found the key already present.
	ErrExists = errors.New("cachekit: key exists")
	// ErrNotInteger reports that Increment found a value that is not a base-10
	// int64, or that the result would overflow.
	ErrNotInteger = errors.New("cachekit: value is not an integer")
	// ErrClosed reports use of a cache after Close.
	ErrClosed = errors.New("cachekit: cache closed")
	// ErrInvalidKey reports an empty key or one longer than MaxKeySize.
	ErrInvalidKey = errors.New("cachekit: invalid key")
	// ErrTooLarge reports a value larger than the backend can store.
	ErrTooLarge = errors.New("cachekit: value too large")
	// ErrInvalidTTL reports a negative TTL.
	ErrInvalidTTL = errors.New("cachekit: invalid ttl")
	// ErrDecode reports a stored value that the serializer could not decode
	// into the requested type (corrupt, hostile, or written by another type).
	ErrDecode = errors.New("cachekit: cannot decode value")
	// ErrEncode reports a value that the serializer could not encode.
	ErrEncode = errors.New("cachekit: cannot encode value")
	// ErrLoaderPanic reports that a load function (GetOrLoad's, or a
	// decorated function) panicked. The error also carries the panic value
	// and the stack of the panicking goroutine.
	ErrLoaderPanic = errors.New("cachekit: loader panicked")
	// ErrInvalidURL reports a configuration URL that Open cannot use: an
	// unknown scheme, an unknown parameter, or a malformed value. Its message
	// never contains the URL's password.
	ErrInvalidURL = errors.New("cachekit: invalid cache url")
	// ErrUnavailable reports that a backend skipped the call without
	// contacting its server because its circuit breaker is open: the last
	// calls failed to reach the server. The error also wraps the last
	// connection failure, so errors.Is(err, syscall.ECONNREFUSED) works
	// where the platform reports it.
	ErrUnavailable = errors.New("cachekit: backend unavailable")
	// ErrUnknownOutcome reports a write whose request reached the network
	// but whose reply was lost (the connection failed or the deadline
	// passed after sending). The write may or may not have been applied,
	// exactly once; it is never resent.
	ErrUnknownOutcome = errors.New("cachekit: outcome of the write is unknown")
	// ErrConflict reports that Typed.Update gave up after its bounded
	// retries because other writers kept changing the key between its read
	// and its write (optimistic concurrency, aiocache's OptimisticLock).
	ErrConflict = errors.New("cachekit: update conflict: the key kept changing")
	// ErrUnsupported reports that the cache lacks an optional capability an
	// operation needs (for example Typed.Update over a cache that does not
	// implement CompareAndSwapper).
	ErrUnsupported = errors.New("cachekit: operation not supported by this cache")
	// ErrFlushNotAllowed reports a Clear on a cache with no namespace over
	// a shared server, where Clear would delete every key on the server
	// (FLUSHDB, flush_all). The backends' AllowFlush option (URL parameter
	// allow_flush=true) opts into that.
	ErrFlushNotAllowed = errors.New("cachekit: Clear without a namespace would flush the whole server (set a namespace, or allow_flush=true)")
)

// Error carries the operation and key of a failed cache call. It unwraps to
// the underlying cause, so errors.Is(err, ErrNotFound) and errors.As against a
// client's own error type both work through it.
type Error struct {
	Op  string // the Cache or Typed method name, e.g. "Get" or "Increment"
	Key string // the key involved, if one
	Err error  // the cause
}

// maxKeyInMessage bounds how much of a key an error message shows.
const maxKeyInMessage = 64

// Error formats the error as `cachekit: Op "key": cause`.
func (e *Error) Error() string {
	msg := "cachekit: " + e.Op
	if e.Key != "" {
		k := e.Key
		if len(k) > maxKeyInMessage {
			k = k[:maxKeyInMessage] + "..."
		}
		msg += " " + strconv.Quote(k)
	}
	if e.Err != nil {
		msg += ": " + trimPrefix(e.Err.Error())
	}
	return msg
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// trimPrefix drops a leading "cachekit: " so wrapped sentinels don't stutter.
func trimPrefix(s string) string {
	const p = "cachekit: "
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}

// WrapError wraps err in an [*Error] for op and key. It returns nil when err is
// nil, and returns err unchanged when it already is an *Error, so that layers
// don't nest the same information twice.
func WrapError(op, key string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*Error); ok {
		return err
	}
	var ce *Error
	if errors.As(err, &ce) {
		return err
	}
	return &Error{Op: op, Key: key, Err: err}
}
