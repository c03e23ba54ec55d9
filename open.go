package cachekit

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
)

// URLOpener opens a Cache from a parsed URL. Backends implement it and
// register it for their schemes with [URLMux.Register], usually from an init
// function, so that a blank import of the backend package makes its scheme
// available to [Open].
//
// OpenCacheURL must reject query parameters it does not know with an error
// for which errors.Is(err, ErrInvalidURL) reports true, and must never put the
// URL's password in an error. A cache it returns owns its client and closes it
// on Close.
type URLOpener interface {
	OpenCacheURL(ctx context.Context, u *url.URL) (Cache, error)
}

// URLOpenerFunc adapts a function to the [URLOpener] interface.
type URLOpenerFunc func(ctx context.Context, u *url.URL) (Cache, error)

// OpenCacheURL calls f(ctx, u).
func (f URLOpenerFunc) OpenCacheURL(ctx context.Context, u *url.URL) (Cache, error) {
	return f(ctx, u)
}

// URLMux maps URL schemes to [URLOpener]s. The zero value is an empty mux
// ready to use. Most programs use the process-wide [DefaultURLMux] through
// [Open]; tests and programs that want a private set of schemes make their
// own.
type URLMux struct {
	mu      sync.RWMutex
	openers map[string]URLOpener
}

// Register makes opener responsible for scheme (compared case-insensitively).
// It panics if scheme is empty or already registered, as
// database/sql.Register does: both are programming errors found at init time.
func (m *URLMux) Register(scheme string, opener URLOpener) {
	scheme = strings.ToLower(scheme)
	if scheme == "" || opener == nil {
		panic("cachekit: Register with an empty scheme or a nil opener")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.openers[scheme]; dup {
		panic("cachekit: scheme " + scheme + " registered twice")
	}
	if m.openers == nil {
		m.openers = make(map[string]URLOpener)
	}
	m.openers[scheme] = opener
}

// Schemes returns the registered schemes, sorted.
func (m *URLMux) Schemes() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]string, 0, len(m.openers))
	for s := range m.openers {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Open parses rawURL and opens a Cache with the opener registered for its
// scheme. Errors wrap ErrInvalidURL when the URL itself is at fault, and never
// contain the URL's password.
func (m *URLMux) Open(ctx context.Context, rawURL string) (Cache, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Parse quotes the whole input in its error, password included.
		return nil, fmt.Errorf("%w: cannot parse %q", ErrInvalidURL, RedactURL(rawURL))
	}
	scheme := strings.ToLower(u.Scheme)
	m.mu.RLock()
	opener := m.openers[scheme]
	m.mu.RUnlock()
	if opener == nil {
		hint := ""
		switch scheme {
		case "redis", "rediss", "redis+cluster", "redis+sentinel", "rediss+cluster", "rediss+sentinel":
			hint = ` (import _ "github.com/cachekit/cachekit/backend/redis")`
		case "memcached", "memcache":
			hint = ` (import _ "github.com/cachekit/cachekit/backend/memcached")`
		case "mem", "memory":
			hint = ` (import _ "github.com/cachekit/cachekit/backend/memory")`
		}
		return nil, fmt.Errorf("%w: no backend registered for scheme %q%s; registered: %v",
			ErrInvalidURL, u.Scheme, hint, m.Schemes())
	}
	c, err := opener.OpenCacheURL(ctx, u)
	if err != nil {
		return nil, redactErr(err, u)
	}
	return c, nil
}

var defaultMux = new(URLMux)

// DefaultURLMux returns the process-wide URLMux that [Open] uses and that
// backends register their schemes with.
func DefaultURLMux() *URLMux { return defaultMux }

// Open opens the cache that rawURL describes, using [DefaultURLMux]. The
// backend for the URL's scheme must be linked in, usually by a blank import:
//
//	import _ "github.com/cachekit/cachekit/backend/redis"
//
//	c, err := cachekit.Open(ctx, "redis://:secret@localhost:6379/0?namespace=app")
//
// URL forms:
//
//	mem://?max_bytes=64MiB&namespace=app                        (also memory://)
//	redis://user:pass@host:6379/0?namespace=app&timeout=100ms   (rediss:// for TLS)
//	redis+cluster://h1:7000,h2:7001?namespace=app
//	redis+sentinel://h1:26379,h2:26379?master_name=mymaster&namespace=app
//	memcached://h1:11211,h2:11211?namespace=app&timeout=100ms
//
// Unknown query parameters are errors. The caller owns the returned cache and
// must Close it, which also closes its client.
func Open(ctx context.Context, rawURL string) (Cache, error) {
	return defaultMux.Open(ctx, rawURL)
}

// RedactURL returns rawURL with any password replaced by "xxxxx". Unlike
// url.URL.Redacted it also works on strings that do not parse, so it is safe
// to use in the error for a malformed URL.
func RedactURL(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil {
		if _, has := u.User.Password(); !has {
			return rawURL
		}
		return u.Redacted()
	}
	// Fall back to text surgery: the userinfo runs from after "//" to the
	// last "@" before the path.
	start := strings.Index(rawURL, "//")
	if start < 0 {
		start = 0
	} else {
		start += 2
	}
	rest := rawURL[start:]
	end := len(rest)
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		end = i
	}
	at := strings.LastIndex(rest[:end], "@")
	if at < 0 {
		return rawURL
	}
	user := rest[:at]
	if i := strings.Index(user, ":"); i >= 0 {
		user = user[:i] + ":xxxxx"
	}
	return rawURL[:start] + user + rest[at:]
}

// redactErr removes u's password from err's message, should an opener or
// its client library have put it there. The result still unwraps to err.
func redactErr(err error, u *url.URL) error {
	pw, ok := u.User.Password()
	if !ok || pw == "" {
		return err
	}
	msg := err.Error()
	if !strings.Contains(msg, pw) && !strings.Contains(msg, url.QueryEscape(pw)) && !strings.Contains(msg, url.PathEscape(pw)) {
		return err
	}
	return &redactedError{err: err, pw: pw}
}

type redactedError struct {
	err error
	pw  string
}

func (e *redactedError) Error() string {
	msg := e.err.Error()
	for _, s := range []string{e.pw, url.QueryEscape(e.pw), url.PathEscape(e.pw)} {
		msg = strings.ReplaceAll(msg, s, "xxxxx")
	}
	return msg
}

func (e *redactedError) Unwrap() error { return e.err }
