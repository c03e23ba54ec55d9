package lock

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/internal/tracker"
)

var (
	// ErrLocked reports that another holder has the lock: TryAcquire
	// returns it at once, and Acquire wraps it (with ctx's error) when ctx
	// ends before the lock was free.
	ErrLocked = errors.New("lock: held by another owner")
	// ErrLockLost reports that a Lock's lease is no longer its own: it
	// expired (and another holder may have taken the name), was evicted,
	// or was released already. Extend and Release return it without
	// touching the current holder's lease.
	ErrLockLost = errors.New("lock: lease lost (expired, evicted or released)")
)

// Defaults of [Options].
const (
	DefaultTTL           = 10 * time.Second
	DefaultRetryDelay    = 10 * time.Millisecond
	DefaultMaxRetryDelay = 200 * time.Millisecond
	DefaultPrefix        = "lock:"
)

// Options configures a [Locker]. A nil *Options, and every zero field, means
// the default.
type Options struct {
	// TTL is the lease of every acquisition: a lock not released or
	// extended within TTL expires, and the name is free again. Default
	// (0 or negative): DefaultTTL, 10s. Choose it well above the longest
	// critical section, or Extend long ones; see the package doc for what
	// happens to a holder that outlives it.
	TTL time.Duration

	// RetryDelay is how long a waiting Acquire waits after its first failed
	// attempt; each further wait doubles, up to MaxRetryDelay, and each is
	// jittered (a random time between half and all of it) so that waiters
	// spread out. Default (0 or negative): DefaultRetryDelay, 10ms.
	RetryDelay time.Duration

	// MaxRetryDelay bounds the waits of Acquire, and so how long a lock can
	// stay free after its release before a waiter notices. Default (0 or
	// negative): DefaultMaxRetryDelay, 200ms. A value below RetryDelay is
	// taken as RetryDelay (waits do not grow).
	MaxRetryDelay time.Duration

	// Prefix starts the keys of every lock of this Locker: the lease is
	// Prefix+name+":owner", the fencing counter Prefix+name+":fence".
	// Default (""): DefaultPrefix, "lock:". Lockers over the same cache
	// with the same Prefix share their locks; give other data in that
	// cache's namespace keys that don't end in ":owner" or ":fence" under
	// this prefix.
	Prefix string

	// NoFence turns fencing tokens off: an acquisition is the Add of the
	// lease alone, with no Increment and no companion Prefix+name+":fence"
	// key, and Lock.Token returns 0. It is for stampede locks taken on
	// many short-lived names (one per cache key, say), where the counter
	// that each name would otherwise keep forever, with no expiry, adds
	// up, and where what the lock protects is only duplicate work, not
	// a resource that could check a token. Uncontended, Acquire and
	// Release are then two cache calls. Default: false, every
	// acquisition takes a token.
	NoFence bool
}

// Locker hands out leases on names stored in a cache. It is safe for
// concurrent use; Lockers in many processes over caches of the same server
// and namespace (and the same Prefix) exclude each other.
type Locker struct {
	c        cachekit.Cache
	cad      cachekit.CompareAndDeleter // nil: Acquire fails with ErrUnsupported
	cas      cachekit.CompareAndSwapper // nil: Extend fails with ErrUnsupported
	ver      cachekit.Versioner         // nil: leases compared by value only
	noVers   atomic.Bool                // ver's server gave ErrUnsupported
	ttl      time.Duration
	delay    time.Duration
	maxDelay time.Duration
	prefix   string
	noFence  bool
	// cleanups counts the abandons still running (see Lock.abandon).
	cleanups tracker.Tracker
}

// New returns a Locker that keeps its leases in c. opts may be nil.
//
// When c is a [cachekit.Versioner] (memory, Memcached), a Lock remembers
// the version of its lease: Extend and Release then compare that version,
// in one request, instead of reading the lease to compare its value. They
// fall back to comparing the value when the version no longer matches
// (another goroutine's Extend of the same Lock changed it) or the server
// gives no versions, so the outcome is the same either way.
//
// Release needs c to implement [cachekit.CompareAndDeleter], and Extend
// [cachekit.CompareAndSwapper] (every backend of this module implements
// both, and cachekit.WithHooks keeps them). New does not fail without
// them: Acquire and TryAcquire then return an error for which
// errors.Is(err, cachekit.ErrUnsupported) reports true, and without
// CompareAndSwap only Extend does.
func New(c cachekit.Cache, opts *Options) *Locker {
	l := &Locker{c: c, ttl: DefaultTTL, delay: DefaultRetryDelay, maxDelay: DefaultMaxRetryDelay, prefix: DefaultPrefix}
	l.cad, _ = c.(cachekit.CompareAndDeleter)
	l.cas, _ = c.(cachekit.CompareAndSwapper)
	l.ver, _ = c.(cachekit.Versioner)
	if opts != nil {
		if opts.TTL > 0 {
			l.ttl = opts.TTL
		}
		if opts.RetryDelay > 0 {
			l.delay = opts.RetryDelay
		}
		if opts.MaxRetryDelay > 0 {
			l.maxDelay = opts.MaxRetryDelay
		}
		if opts.Prefix != "" {
			l.prefix = opts.Prefix
		}
		l.noFence = opts.NoFence
	}
	l.maxDelay = max(l.maxDelay, l.delay)
	return l
}

// Acquire takes the lock on name, waiting until it is free: it retries with
// exponential backoff and jitter (Options.RetryDelay up to
// Options.MaxRetryDelay) while another holder has it. It returns when it
// holds the lock; when ctx ends while it waits, with an error for which
// both errors.Is(err, ctx.Err()) and errors.Is(err, ErrLocked) report true
// (with a ctx done before the first attempt, the cache's ctx error).
// Any other error of the cache is returned at once, and then no lease is
// held: after an Add with an unknown outcome (cachekit.ErrUnknownOutcome)
// Acquire deletes the lease if it landed, best effort; one it fails to
// delete expires after the TTL. That delete never holds Acquire past ctx's
// end: when ctx ends first (a stuck server, say), Acquire returns at once
// with the Add's error (which reports ctx's, on a backend that honours
// ctx), and the delete goes on in the background for up to a second
// ([Locker.Wait] waits for it).
//
// Uncontended, Acquire makes two cache calls (Add, Increment; over a
// [cachekit.Versioner], AddVersion and Increment): two round trips on
// Redis, two requests on Memcached (a meta-protocol add that returns the
// lease's version, and incr); with Options.NoFence, one.
func (l *Locker) Acquire(ctx context.Context, name string) (*Lock, error) {
	delay, waited := l.delay, false
	for {
		k, err := l.try(ctx, name)
		if err == nil {
			return k, nil
		}
		if !errors.Is(err, ErrLocked) && !errors.Is(err, ErrLockLost) {
			if ctxErr := ctx.Err(); ctxErr != nil && waited {
				// ctx ended during an attempt after the lock was found held.
				return nil, fmt.Errorf("lock: acquire %q: %w: %w", name, ctxErr, ErrLocked)
			}
			return nil, err
		}
		waited = true
		wait := delay/2 + mrand.N(delay/2+1)
		delay = min(2*delay, l.maxDelay)
		if err := sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("lock: acquire %q: %w: %w", name, err, ErrLocked)
		}
	}
}

// TryAcquire takes the lock on name if it is free, and returns ErrLocked
// at once if another holder has it. In the rare case that taking the lease
// and its token took longer than the TTL (see the package doc), it gives
// the lease up and returns ErrLockLost. Other errors are the cache's, as
// with Acquire; and as with Acquire, a lease that a failed TryAcquire may
// have stored is deleted before it returns, or, once ctx has ended, in the
// background ([Locker.Wait]).
//
// TryAcquire makes two cache calls when it gets the lock (Add, Increment;
// with Options.NoFence, the Add alone) and one when it does not. With
// NoFence it never returns ErrLockLost.
func (l *Locker) TryAcquire(ctx context.Context, name string) (*Lock, error) {
	return l.try(ctx, name)
}

// validity is how long after the start of an acquisition, by the local
// clock, its lease is surely still unexpired on the server: the TTL less 1%
// for clock drift and 2ms (at most half the TTL).
func validity(ttl time.Duration) time.Duration {
	return ttl - min(ttl/100+2*time.Millisecond, ttl/2)
}

func (l *Locker) try(ctx context.Context, name string) (*Lock, error) {
	if l.cad == nil {
		return nil, fmt.Errorf("lock: %w: %T is not a CompareAndDeleter (needed to release a lock)", cachekit.ErrUnsupported, l.c)
	}
	if name == "" {
		return nil, fmt.Errorf("lock: empty name: %w", cachekit.ErrInvalidKey)
	}
	k := &Lock{l: l, name: name, key: l.prefix + name + ":owner", value: []byte(rand.Text())}
	start := time.Now()
	if err := l.add(ctx, k); err != nil {
		if errors.Is(err, cachekit.ErrExists) {
			return nil, ErrLocked
		}
		if errors.Is(err, cachekit.ErrUnknownOutcome) {
			k.abandon(ctx) // the Add may have landed: only this value matches
		}
		return nil, err
	}
	if l.noFence {
		return k, nil // no token to take, so nothing that could lapse
	}
	n, err := l.c.Increment(ctx, l.prefix+name+":fence", 1)
	if err == nil && n <= 0 {
		err = fmt.Errorf("lock: fencing counter of %q is %d: %w", name, n, cachekit.ErrNotInteger)
	}
	if err != nil {
		k.abandon(ctx)
		return nil, err
	}
	if time.Since(start) >= validity(l.ttl) {
		// The lease may have expired before the token was taken, and a
		// later holder got a smaller one: this lease is unusable.
		k.abandon(ctx)
		return nil, ErrLockLost
	}
	k.token = uint64(n)
	return k, nil
}

// add stores k's lease, remembering its version when the cache gives one.
func (l *Locker) add(ctx context.Context, k *Lock) error {
	if l.ver != nil && !l.noVers.Load() {
		v, err := l.ver.AddVersion(ctx, k.key, k.value, l.ttl)
		if !errors.Is(err, cachekit.ErrUnsupported) {
			k.version.Store(v)
			return err
		}
		l.noVers.Store(true) // nothing was written: add by value
	}
	return l.c.Add(ctx, k.key, k.value, l.ttl)
}

// Lock is one acquisition of a name: a lease held until Release, or until
// its TTL passes without an Extend. It is safe for concurrent use (one
// goroutine may Extend while another works).
type Lock struct {
	l     *Locker
	name  string
	key   string
	value []byte
	token uint64
	done  atomic.Bool // released, or found lost
	// version is the lease's version (cachekit.Versioner), or 0 when it
	// is not known: Extend and Release then compare the value.
	version atomic.Uint64
}

// Name returns the name the lock is on.
func (k *Lock) Name() string { return k.name }

// Token returns the lock's fencing token. Every acquisition of a name gets
// a token greater than that of every earlier acquisition of the name, for
// as long as the name's counter survives in the cache (see the package
// doc). Pass it with every write the lock protects, and have the resource
// reject a write whose token is lower than one it has already seen: that
// stops a holder that lost its lease without knowing it. With
// Options.NoFence, Token returns 0.
func (k *Lock) Token() uint64 { return k.token }

// Extend sets the lease's remaining time to ttl (0: the Locker's TTL),
// atomically with checking that it is still this Lock's. It returns
// ErrLockLost when the lease expired, was evicted, or was released: then
// it has changed nothing, and another holder may have the name. A
// negative ttl is an error for which errors.Is(err, cachekit.ErrInvalidTTL)
// reports true. One cache call: CompareAndSwap of the lease with itself
// or, over a [cachekit.Versioner], SwapVersion of it (two when the version
// no longer matches: then CompareAndSwap decides).
//
// Over a cache that does not implement [cachekit.CompareAndSwapper],
// Extend returns an error for which errors.Is(err,
// cachekit.ErrUnsupported) reports true.
func (k *Lock) Extend(ctx context.Context, ttl time.Duration) error {
	if ttl < 0 {
		return fmt.Errorf("lock: extend %q by %v: %w", k.name, ttl, cachekit.ErrInvalidTTL)
	}
	if ttl == 0 {
		ttl = k.l.ttl
	}
	if k.l.cas == nil {
		return fmt.Errorf("lock: %w: %T is not a CompareAndSwapper (needed to extend a lock)", cachekit.ErrUnsupported, k.l.c)
	}
	if k.done.Load() {
		return ErrLockLost
	}
	if v := k.version.Load(); v != 0 && k.l.ver != nil {
		nv, ok, err := k.l.ver.SwapVersion(ctx, k.key, v, k.value, ttl)
		switch {
		case ok:
			k.version.CompareAndSwap(v, nv)
			return nil
		case err != nil && !errors.Is(err, cachekit.ErrUnsupported):
			return err
		}
		// Not this version (a concurrent Extend of this Lock may have
		// changed it), or no versions: compare the value.
	}
	ok, err := k.l.cas.CompareAndSwap(ctx, k.key, k.value, k.value, ttl)
	if err != nil {
		return err
	}
	k.version.Store(0) // the swap gave the lease a version we don't know
	if !ok {
		k.done.Store(true)
		return ErrLockLost
	}
	return nil
}

// Release gives the lock up: it deletes the lease only if it is still this
// Lock's. It returns ErrLockLost when the lease expired, was evicted, or
// was released already, and then it has deleted nothing: another holder's
// lease is never touched. When Release fails with another error (the
// server is unreachable, ctx ended), the lease may still be there; it
// expires after its TTL, and Release may be called again. One cache call:
// CompareAndDelete or, over a [cachekit.Versioner], DeleteVersion (two
// when the version no longer matches: then CompareAndDelete decides).
func (k *Lock) Release(ctx context.Context) error {
	if k.done.Load() {
		return ErrLockLost
	}
	ok, err := k.release(ctx)
	if err != nil {
		return err
	}
	// ok decides, not done: an Extend racing this Release may have found
	// the lease gone (deleted here) and marked the Lock done meanwhile.
	k.done.Store(true)
	if !ok {
		return ErrLockLost
	}
	return nil
}

// release deletes the lease if it is still this Lock's.
func (k *Lock) release(ctx context.Context) (bool, error) {
	if v := k.version.Load(); v != 0 && k.l.ver != nil {
		ok, err := k.l.ver.DeleteVersion(ctx, k.key, v)
		if ok || (err != nil && !errors.Is(err, cachekit.ErrUnsupported)) {
			return ok, err
		}
	}
	return k.l.cad.CompareAndDelete(ctx, k.key, k.value)
}

// abandon releases a lease whose acquisition failed after its Add (the
// Add may have landed, or did), so that a failed or cancelled acquisition
// does not leave the name locked until the TTL passes. It is best effort:
// a lease it fails to delete expires after the TTL.
//
// The release runs in a goroutine, with ctx's values but not its
// cancellation, bounded by abandonTimeout, and counted in the Locker's
// cleanups (Locker.Wait waits for it). abandon waits for it only while
// ctx is live: a caller whose ctx ends (the usual reason for an unknown
// outcome is a stuck server) gets its answer by its deadline, and the
// release goes on without it. It deletes the lease only if it is still
// this Lock's (by version or by value, as Release), so a late release
// never touches the lease of a later holder.
func (k *Lock) abandon(ctx context.Context) {
	k.l.cleanups.Run(ctx, func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abandonTimeout)
		defer cancel()
		_, _ = k.release(rctx)
	})
}

// abandonTimeout bounds the release of an abandoned acquisition.
const abandonTimeout = time.Second

// Wait returns when every release that an acquisition left running in the
// background has ended. Acquire and TryAcquire leave one when the
// acquisition failed after its lease may have been stored (an Add whose
// outcome is unknown, a failed Increment) and their ctx ended before the
// lease was deleted: they return by ctx's deadline, and the release goes
// on, bounded by one second (a lease it fails to delete expires after its
// TTL). Releases started while Wait waits are waited for too.
//
// Call Wait before closing the cache, at shutdown or at the end of a test:
// a release that runs after Close fails, and the lease stays until its TTL
// passes. A Locker has no Close: it owns nothing else.
func (l *Locker) Wait() { l.cleanups.Wait() }

// sleep waits d, or until ctx is done (returning ctx.Err()).
func sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
