package cachekit

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Invalidation is one message on a [Backplane]: some entries of a shared
// cache changed, so every process that holds them decoded in a local tier
// must drop them.
type Invalidation struct {
	// Namespace is the namespace of the cache whose entries changed, as
	// [NamespaceOf] reports it ("" for a cache without one).
	Namespace string
	// Keys are the keys written, deleted or expired. Empty when All or
	// Reset is set.
	Keys []string
	// All reports a Clear: every entry of Namespace changed.
	All bool
	// Reset reports that the backplane may have lost messages (it
	// reconnected after a disconnect): a subscriber must drop every local
	// entry it holds, in every namespace. Only backplanes send it.
	Reset bool
	// Origin identifies the publisher, so that a subscriber can skip the
	// messages it sent itself. Publishers set it to an id unique to them.
	Origin string
}

// Backplane carries invalidations between the processes (and the [Typed]
// caches of one process) that share a cache, so that each one's local tier
// stays coherent with the others' writes. The word is FusionCache's.
//
// A Backplane is safe for concurrent use. Its trouble (a lost connection, a
// failed publish) never makes a cache read or write fail: Publish returns the
// error for the caller to report, and a subscription's errors go to its
// onError function.
type Backplane interface {
	// Publish sends inv to every subscriber of the backplane, in this
	// process and in others, its own subscribers included (they skip it by
	// Origin). It returns once the message is sent, not once it is
	// received, except where the implementation documents otherwise.
	Publish(ctx context.Context, inv Invalidation) error

	// Subscribe calls onMessage for every invalidation published from now
	// on, and onError (which may be nil) for trouble of the subscription,
	// such as a disconnect; after a disconnect the backplane delivers an
	// Invalidation with Reset set once it is receiving again. The functions
	// are called from one goroutine at a time and must not block for long.
	// stop ends the subscription: after it returns, neither is called. It
	// must not be called from onMessage or onError.
	Subscribe(onMessage func(Invalidation), onError func(error)) (stop func())

	// Close ends every subscription and releases the backplane's
	// resources. After Close, Publish returns an error wrapping ErrClosed.
	Close() error
}

// BackplaneWatcher is an optional interface of a [Backplane] that needs to
// know the caches whose entries it carries: a server-assisted backplane
// (Redis client tracking) learns from them which keys to track. A Typed with
// a Backplane calls Watch with its cache once, when it is made.
type BackplaneWatcher interface {
	Watch(c Cache) error
}

// Namespacer is implemented by caches that know their namespace: every
// backend of this module. Wrappers need not implement it: [NamespaceOf]
// looks through them.
type Namespacer interface {
	Namespace() string
}

// NamespaceOf returns the namespace of c, looking through wrappers (caches
// with an Unwrap() Cache method) for a [Namespacer]. It returns "" when no
// cache in the chain knows its namespace.
func NamespaceOf(c Cache) string {
	for c != nil {
		if n, ok := c.(Namespacer); ok {
			return n.Namespace()
		}
		u, ok := c.(interface{ Unwrap() Cache })
		if !ok {
			return ""
		}
		c = u.Unwrap()
	}
	return ""
}

// BackplaneOpener opens a Backplane from a parsed URL. Backend packages
// register one for their schemes from an init function, as they do a
// [URLOpener]. It must reject parameters it does not know with an error
// wrapping ErrInvalidURL and never put the URL's password in an error.
type BackplaneOpener interface {
	OpenBackplaneURL(ctx context.Context, u *url.URL) (Backplane, error)
}

// BackplaneOpenerFunc adapts a function to the [BackplaneOpener] interface.
type BackplaneOpenerFunc func(ctx context.Context, u *url.URL) (Backplane, error)

// OpenBackplaneURL calls f(ctx, u).
func (f BackplaneOpenerFunc) OpenBackplaneURL(ctx context.Context, u *url.URL) (Backplane, error) {
	return f(ctx, u)
}

var backplanes struct {
	mu      sync.RWMutex
	openers map[string]BackplaneOpener
}

// RegisterBackplane makes opener responsible for the backplane URLs of scheme
// (compared case-insensitively). It panics if scheme is empty or already
// registered: both are programming errors found at init time.
func RegisterBackplane(scheme string, opener BackplaneOpener) {
	scheme = strings.ToLower(scheme)
	if scheme == "" || opener == nil {
		panic("cachekit: RegisterBackplane with an empty scheme or a nil opener")
	}
	backplanes.mu.Lock()
	defer backplanes.mu.Unlock()
	if _, dup := backplanes.openers[scheme]; dup {
		panic("cachekit: backplane scheme " + scheme + " registered twice")
	}
	if backplanes.openers == nil {
		backplanes.openers = make(map[string]BackplaneOpener)
	}
	backplanes.openers[scheme] = opener
}

// BackplaneSchemes returns the schemes [OpenBackplane] knows, sorted.
func BackplaneSchemes() []string {
	backplanes.mu.RLock()
	defer backplanes.mu.RUnlock()
	out := make([]string, 0, len(backplanes.openers))
	for s := range backplanes.openers {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// OpenBackplane opens a Backplane by URL, with the opener a backend package
// registered for its scheme (a blank import of backend/redis registers
// redis:// and rediss://). Errors for a URL that is empty, malformed or of an
// unknown scheme wrap ErrInvalidURL and never contain the URL's password.
//
//	redis://host:6379/0?channel=app     Redis pub/sub (any Cache backend, Memcached included)
//	redis://host:6379/0?mode=tracking   server-assisted: Redis client tracking on the caches' key prefixes
func OpenBackplane(ctx context.Context, rawURL string) (Backplane, error) {
	if strings.TrimSpace(rawURL) == "" {
		return nil, fmt.Errorf("%w: the backplane URL is empty; want one such as redis://localhost:6379/0?channel=app (registered schemes: %s)",
			ErrInvalidURL, strings.Join(BackplaneSchemes(), ", "))
	}
	if !strings.Contains(rawURL, "://") {
		return nil, fmt.Errorf("%w: backplane URL %s has no scheme://; registered schemes: %s",
			ErrInvalidURL, RedactURL(rawURL), strings.Join(BackplaneSchemes(), ", "))
	}
	// The same checks as Open: strict structure, no password in errors.
	u, err := (&URLMux{}).parse(rawURL)
	if err != nil {
		return nil, err
	}
	backplanes.mu.RLock()
	opener := backplanes.openers[strings.ToLower(u.Scheme)]
	backplanes.mu.RUnlock()
	if opener == nil {
		return nil, fmt.Errorf("%w: no backplane registered for scheme %q (registered: %s; import the backend package that provides it)",
			ErrInvalidURL, u.Scheme, strings.Join(BackplaneSchemes(), ", "))
	}
	bp, err := opener.OpenBackplaneURL(ctx, u)
	if err != nil {
		return nil, redactErr(err, rawURL, u)
	}
	return bp, nil
}

// NewMemoryBackplane returns a Backplane inside this process, for tests and
// single binaries with several Typed caches over one shared cache. It
// delivers synchronously: when Publish returns, every subscriber's onMessage
// has returned, so every other Typed on it misses or sees the new value on
// its next Get.
func NewMemoryBackplane() Backplane {
	return &memoryBackplane{subs: map[uint64]*memorySub{}}
}

type memoryBackplane struct {
	mu     sync.RWMutex
	next   uint64
	subs   map[uint64]*memorySub
	closed bool
	// deliver serializes deliveries, so that each subscriber is called
	// from one goroutine at a time, as Subscribe promises.
	deliver sync.Mutex
}

func (b *memoryBackplane) Publish(ctx context.Context, inv Invalidation) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return fmt.Errorf("memory backplane: %w", ErrClosed)
	}
	subs := make([]*memorySub, 0, len(b.subs))
	for _, s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.RUnlock()
	b.deliver.Lock()
	defer b.deliver.Unlock()
	for _, s := range subs {
		if s.stopped.Load() {
			continue
		}
		inv := inv
		inv.Keys = append([]string(nil), inv.Keys...) // subscribers may keep it
		s.fn(inv)
	}
	return nil
}

type memorySub struct {
	fn      func(Invalidation)
	stopped atomic.Bool
}

func (b *memoryBackplane) Subscribe(onMessage func(Invalidation), _ func(error)) (stop func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return func() {}
	}
	id := b.next
	b.next++
	sub := &memorySub{fn: onMessage}
	b.subs[id] = sub
	var once sync.Once
	return func() {
		once.Do(func() {
			sub.stopped.Store(true)
			b.mu.Lock()
			delete(b.subs, id)
			b.mu.Unlock()
			// Wait for a delivery in progress, so that nothing is called
			// after stop returns.
			b.deliver.Lock()
			b.deliver.Unlock() //nolint:staticcheck // an empty critical section: a barrier
		})
	}
}

func (b *memoryBackplane) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	clear(b.subs)
	return nil
}
