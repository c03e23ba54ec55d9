package decorator

import (
	"context"
	"fmt"
	"time"
)

// Default values of the [Options] fields whose zero value means "default".
const (
	// DefaultFailSafeThrottle is the default of Options.FailSafeThrottle.
	DefaultFailSafeThrottle = 5 * time.Second
	// DefaultBackgroundTimeout is the default of Options.BackgroundTimeout.
	DefaultBackgroundTimeout = 30 * time.Second
	// DefaultLeaseTTL is the default of Options.LeaseTTL.
	DefaultLeaseTTL = 10 * time.Second
	// DefaultLeasePoll is the default of Options.LeasePoll.
	DefaultLeasePoll = 10 * time.Millisecond
)

// Options configures a decorated function. A nil *Options[K] means the zero
// value, in which every field has its default; [Cached] and [New] panic
// when fn needs a Name (see Name) or when a field is invalid (a negative
// duration, say), since both are programming errors found at start-up.
//
// The options that need more than the value to be stored (FailSafeMaxStale,
// RefreshAhead, RefreshBeta, NegativeTTL) switch the stored format from the
// plain encoding of the value to a versioned envelope that carries the
// value's logical expiry; see the package documentation.
type Options[K comparable] struct {
	// Name names the function's key space: every key the function uses
	// starts with it, so that two functions with the same argument type
	// never read each other's values. Default: the function's symbol name,
	// such as "example.com/app/users.(*Repo).Load-fm". A function literal or
	// an instance of a generic function has no stable symbol name (it is
	// "pkg.F.func1", which changes when code moves, or shared by every
	// instance), so for those Name is required and Cached panics without
	// it. Two method values of one method on different receivers share
	// the derived name: give them Names when they must not share values.
	// Changing Name (or the argument type) starts a cold, empty key space.
	Name string

	// KeyFunc, when set, returns the key of an argument within the key
	// space, replacing the default encoding. It must return the same
	// string for equal arguments and different strings for different ones.
	// Default: nil, the canonical encoding described in the package
	// documentation.
	KeyFunc func(K) string

	// TTL is how long a result stays fresh. Default: 0, the TTL of the
	// Typed cache (TypedOptions.TTL), itself 0 (no expiry) unless set.
	TTL time.Duration

	// TTLFunc, when set, returns the TTL of each result, overriding TTL.
	// result holds fn's value (a V). A negative TTL means "don't store
	// this result"; 0 means no expiry. Default: nil.
	TTLFunc func(key K, result any) time.Duration

	// SkipCache, when set, reports whether a result must not be stored
	// (aiocache's skip_cache_func). result holds fn's value (a V). The
	// result is still returned to the callers. Default: nil, every result
	// is stored.
	SkipCache func(key K, result any) bool

	// NegativeTTL, when positive, turns on negative caching: a "not found"
	// result is remembered for NegativeTTL, and calls within that time get
	// it without calling fn. For Cached, "not found" is an error from fn
	// for which errors.Is(err, NegativeError) reports true, and later calls
	// return NegativeError itself; for CachedMany it is a requested
	// argument that fn's map leaves out, and later calls leave it out too.
	// Default: 0, off.
	NegativeTTL time.Duration

	// NegativeError is the "not found" error of Cached's fn (such as
	// sql.ErrNoRows or your ErrUserNotFound). Required for Cached when
	// NegativeTTL is set; unused by CachedMany. Default: nil.
	NegativeError error

	// OnError receives the cache errors that the decorated function
	// absorbs to keep serving: failed reads and writes, undecodable values,
	// lease trouble. Each is a *cachekit.Error naming the operation and key.
	// It must be safe for concurrent use. Default: nil, such errors are
	// dropped (they are also emitted as events where one applies). The
	// Typed cache's own TypedOptions.OnError is not used.
	OnError func(ctx context.Context, err error)

	// FailFast makes a failed or timed-out cache read, or an undecodable
	// value, the caller's error, instead of a reason to call fn. A failed
	// write after fn succeeded is still only reported to OnError (the write
	// is made in the background, after the caller got the value). Default:
	// false, cache trouble is not the caller's trouble.
	FailFast bool

	// CacheTimeout bounds each cache operation the decorated function
	// makes, on top of the caller's ctx and the backend's own timeout, so
	// that a slow cache cannot stall callers: a read that takes longer is
	// treated as cache trouble (fn is called). It bounds the background
	// writes too. Default: 0, no bound of its own (the backend's timeout
	// and ctx apply; writes, which no caller waits for, are also cut off
	// after BackgroundTimeout). A bound costs a timer per
	// operation, about as much as a hit on the memory backend, so it is
	// off by default; set it (e.g. 100ms) for Redis and Memcached when
	// their client timeouts are longer than your callers can wait.
	CacheTimeout time.Duration

	// FailSafeMaxStale, when positive, turns on fail-safe: a value is kept
	// for FailSafeMaxStale past its TTL, and when fn fails (an error other
	// than NegativeError, a panic, or a call of runtime.Goexit) while such a
	// stale value exists, the
	// stale value is returned instead of the error. A context error that fn
	// returns because every caller has gone is not a failure: the callers'
	// own ctx errors are returned and nothing is re-stored. Values stored
	// without expiry never go stale. Default: 0, off.
	FailSafeMaxStale time.Duration

	// FailSafeThrottle is how long a stale value served by fail-safe is
	// treated as fresh, so that fn is not retried for that key more than
	// once per interval (in every process: the value is stored again with
	// the short expiry). Default: [DefaultFailSafeThrottle], 5s, when
	// fail-safe is on.
	FailSafeThrottle time.Duration

	// SoftTimeout, when positive, bounds how long a caller waits for fn
	// when a stale value exists: after SoftTimeout the caller gets the
	// stale value, and fn runs on in the background (up to
	// BackgroundTimeout) and stores its result. Requires
	// FailSafeMaxStale. Default: 0, off.
	SoftTimeout time.Duration

	// HardTimeout, when positive, bounds how long a caller waits for fn in
	// any case: after HardTimeout the caller gets a stale value if one
	// exists, and otherwise an error for which errors.Is(err,
	// ErrHardTimeout) and errors.Is(err, context.DeadlineExceeded) report
	// true. fn runs on in the background (up to BackgroundTimeout) and
	// stores its result. Default: 0, off.
	HardTimeout time.Duration

	// BackgroundTimeout bounds the work that outlives its callers: an early
	// refresh, with SoftTimeout or HardTimeout set every run of fn (which
	// then is not cancelled when its callers leave, so that its result
	// reaches the cache), and, without CacheTimeout, each background cache
	// write (which the backend's own timeout normally ends much sooner).
	// When it passes, the work's ctx is cancelled. Default:
	// [DefaultBackgroundTimeout], 30s.
	BackgroundTimeout time.Duration

	// RefreshAhead, when between 0 and 1, turns on early refresh by
	// threshold: a hit on a value older than RefreshAhead of its TTL
	// starts one background refresh of that key (per process), so that a
	// hot key never goes cold. 0.8 refreshes in the last fifth of the TTL.
	// Default: 0, off.
	RefreshAhead float64

	// RefreshBeta, when positive, turns on probabilistic early refresh
	// (Vattani, Chierichetti and Lowenstein, "Optimal Probabilistic Cache
	// Stampede Prevention", VLDB 2015): a hit refreshes in the background
	// when now - delta*RefreshBeta*ln(rand()) >= expiry, delta being how
	// long fn took. 1 is the paper's recommended value; larger refreshes
	// earlier. Combines with RefreshAhead (either triggers). Default: 0,
	// off.
	RefreshBeta float64

	// Lease turns on stampede protection across processes: on a miss, a
	// process runs fn only if it wins the key's lease, a [lock.Lock]
	// taken with TryAcquire (an atomic Add of the lease key with a random
	// owner value and LeaseTTL); the others poll the cache for the value
	// (with backoff and jitter) until it appears or the lease ends, and
	// only then try to win the lease themselves. A holder that dies
	// releases by the lease's expiry. The holder releases after storing
	// the value, with Lock.Release, which deletes the lease only while it
	// is still the holder's (the cache's cachekit.CompareAndDeleter): a
	// lease that expired while fn ran, and that another process won, is
	// left alone, and the lost lease is reported to OnError. Every
	// backend of this module and every wrapper of one implements
	// CompareAndDelete; over a foreign cache without it, the lease is
	// taken the same way but released by Get, compare and Delete, which
	// is not atomic (see the package documentation), and OnError is told
	// so once (an error wrapping cachekit.ErrUnsupported). Not supported
	// by CachedMany.
	// Default: false.
	Lease bool

	// LeaseTTL is the lease's lifetime. It should exceed fn's longest
	// normal run: a lease that expires while fn still runs lets another
	// process run fn too. Default: [DefaultLeaseTTL], 10s.
	LeaseTTL time.Duration

	// LeasePoll is the first interval at which a process waiting for
	// another's lease polls the cache; it doubles on each poll up to 32
	// times itself (and at most a quarter of LeaseTTL), with ±50% jitter.
	// Default: [DefaultLeasePoll], 10ms.
	LeasePoll time.Duration
}

// normalize returns a copy of opts with defaults filled in, or an error for
// an invalid combination.
func normalize[K comparable](opts *Options[K]) (Options[K], error) {
	var o Options[K]
	if opts != nil {
		o = *opts
	}
	for name, d := range map[string]time.Duration{
		"TTL": o.TTL, "NegativeTTL": o.NegativeTTL, "CacheTimeout": o.CacheTimeout,
		"FailSafeMaxStale": o.FailSafeMaxStale, "FailSafeThrottle": o.FailSafeThrottle,
		"SoftTimeout": o.SoftTimeout, "HardTimeout": o.HardTimeout, "BackgroundTimeout": o.BackgroundTimeout,
		"LeaseTTL": o.LeaseTTL, "LeasePoll": o.LeasePoll,
	} {
		if d < 0 {
			return o, fmt.Errorf("decorator: Options.%s is negative (%v)", name, d)
		}
	}
	if o.RefreshAhead < 0 || o.RefreshAhead >= 1 || o.RefreshAhead != o.RefreshAhead {
		return o, fmt.Errorf("decorator: Options.RefreshAhead is %v; want 0 (off) or a fraction below 1", o.RefreshAhead)
	}
	if o.RefreshBeta < 0 || o.RefreshBeta != o.RefreshBeta {
		return o, fmt.Errorf("decorator: Options.RefreshBeta is %v; want 0 (off) or positive", o.RefreshBeta)
	}
	if o.SoftTimeout > 0 && o.FailSafeMaxStale == 0 {
		return o, fmt.Errorf("decorator: Options.SoftTimeout needs Options.FailSafeMaxStale: it only returns stale values")
	}
	if o.FailSafeMaxStale > 0 && o.FailSafeThrottle == 0 {
		o.FailSafeThrottle = DefaultFailSafeThrottle
	}
	if o.BackgroundTimeout == 0 {
		o.BackgroundTimeout = DefaultBackgroundTimeout
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.LeasePoll == 0 {
		o.LeasePoll = DefaultLeasePoll
	}
	return o, nil
}

// envelope reports whether the options need the envelope format.
func (o *Options[K]) envelope() bool {
	return o.FailSafeMaxStale > 0 || o.RefreshAhead > 0 || o.RefreshBeta > 0 || o.NegativeTTL > 0
}
