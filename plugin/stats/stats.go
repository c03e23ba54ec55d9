// Package stats is a cachekit hook that counts what a cache does: hits,
// misses and the hit ratio, operations and errors per method, latency
// percentiles (p50, p99) per method, and the events that Typed and the
// decorator report (loads, load errors, stampede joins, stale values served,
// early refreshes, decode failures). It is aiocache's HitMissRatioPlugin and
// TimingPlugin together.
//
//	st := stats.New(nil)
//	c := cachekit.WithHooks(memory.New(nil), st)
//	...
//	snap := st.Snapshot()
//	fmt.Println(snap.Hits, snap.Misses, snap.HitRatio, snap.Get.P99)
//
// # What is counted
//
// Hits and misses count keys read: a Get is one hit or one miss, an Exists
// that reports true or false is one hit or one miss, and a GetMany adds one
// hit per requested key it found and one miss per requested key it did not
// (a key requested twice counts twice). The stamps that a Typed reads to
// check tags (keys with cachekit.TagKeyPrefix) are not counted: the value's
// own read is. The totals (Snapshot.Hits, Misses
// and HitRatio) count what the reader got: a value the cache found but the
// layer above could not decode (a cachekit.EventDecodeError, after a
// serializer change, say) or whose tag was invalidated (EventTagMiss) is a
// miss there, because the caller had to load the value anyway, and a read
// answered by a Typed's local tier (EventLocalHit, no cache operation) is a
// hit, while the per-method counts (Snapshot.Get, ...) keep what the cache
// answered. The hook must be given to both the cache (cachekit.WithHooks) and
// the events (it is an EventHook) for these to add up. A decorated function (package decorator) reads
// a key once per call (a second read only when another load's write landed
// meanwhile), so one decorated miss is one miss. Some reads are still
// counted as the cache answered them although the caller's outcome
// differs: with the decorator's Lease option, the look after winning the
// lease and the polls of a process waiting for another's load are reads
// too; and with its fail-safe, a value past its TTL but within
// FailSafeMaxStale is found (a hit) although fn runs.
//
// Errors count operations that failed
// with anything but a miss (Get's ErrNotFound) or Add's ErrExists, which are
// answers rather than failures; a cancelled context, an invalid key and a
// closed cache are errors. Events of kinds cachekit does not define are
// counted in OtherEvents.
//
// # Cost
//
// The hot path is lock-free and allocation-free: one atomic addition per
// operation (three for a GetMany), on counters sharded so that goroutines
// on different processors rarely write to the same cache line. Reading the
// clock twice costs more than a memory Get itself on some machines, so
// latency is sampled where that matters: by default, an operation kind
// whose last timed call took less than [FastThreshold] (an in-process
// backend) is timed on one call in 16, chosen at random, and one that took
// longer (a network round trip, where the clock costs nothing by
// comparison) on every call; [Options.TimeEvery] fixes the rate instead.
// The first call of each kind is always timed. Counts are always exact.
//
// Latencies go into a histogram of fixed log-scale buckets, eight per
// power of two, so a percentile is within about 6% of the true value.
package stats

import (
	"context"
	"math"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cachekit/cachekit"
)

// FastThreshold is the latency under which the default sampling treats an
// operation kind as fast and times only one call in 16 (see
// [Options.TimeEvery]).
const FastThreshold = 10 * time.Microsecond

// fastEvery is how often the default sampling times a fast operation kind.
const fastEvery = 16

// Options configures a [Stats]. A nil *Options means the defaults of every
// field.
type Options struct {
	// TimeEvery sets how many calls of one operation kind Stats counts for
	// each one it times to build the latency percentiles. 1 times every
	// call; n > 1 times one call in n at random (n rounded up to a power of
	// two), and always the first. Default (0 or negative): adaptive: a kind
	// whose last timed call took at least FastThreshold is timed on every
	// call, a faster one on one call in 16.
	TimeEvery int
}

// Stats is a [cachekit.Hook] and [cachekit.EventHook] that counts
// operations, outcomes, latencies and events. Install it with
// [cachekit.WithHooks] and read it with [Stats.Snapshot]. One Stats may be
// installed on several caches, which then add to the same counts. It is
// safe for concurrent use.
type Stats struct {
	shards   []shard
	shift    uint // 64 - log2(len(shards))
	mask     uint64
	adaptive bool

	// timeAll[k]: time every call of kind k, because none was timed yet
	// or (adaptive) the last timed one was slow. Read on every call.
	timeAll [cachekit.NumOpKinds]atomic.Bool
	_       [64]byte // keeps the histograms' writes off timeAll's cache line

	hist   [cachekit.NumOpKinds]histogram
	events [numEvents]atomic.Uint64
}

var (
	_ cachekit.Hook      = (*Stats)(nil)
	_ cachekit.EventHook = (*Stats)(nil)
)

// counters are one operation kind's counts on one shard: calls by outcome
// (indexed by cachekit.Outcome), and, for GetMany, keys found and not.
type counters struct {
	calls              [numOutcomes]atomic.Uint64
	keyHits, keyMisses atomic.Uint64
}

const numOutcomes = int(cachekit.OutcomeError) + 1

// shard is one set of counters, padded so that two shards never share a
// cache line (nor an adjacent-line prefetch pair).
type shard struct {
	ops [cachekit.NumOpKinds]counters
	_   [128]byte
}

// New returns a Stats with every count at zero, configured by opts, which
// may be nil.
func New(opts *Options) *Stats {
	var o Options
	if opts != nil {
		o = *opts
	}
	// About four shards per processor, so that the goroutines running on
	// different processors seldom share one.
	n := 1
	for n < 4*runtime.GOMAXPROCS(0) && n < 64 {
		n *= 2
	}
	s := &Stats{shards: make([]shard, n), shift: uint(64 - bits.TrailingZeros(uint(n)))}
	switch {
	case o.TimeEvery <= 0:
		s.adaptive = true
		s.mask = fastEvery - 1
	default:
		every := uint64(1)
		for every < uint64(o.TimeEvery) {
			every *= 2
		}
		s.mask = every - 1
	}
	s.timeFirst()
	return s
}

// timeFirst makes the next call of every kind timed.
func (s *Stats) timeFirst() {
	for k := range s.timeAll {
		s.timeAll[k].Store(true)
	}
}

// shard returns the counters for op. The hooked cache recycles Ops through a
// sync.Pool, whose objects stay with the processor that uses them, so
// hashing the Op's address keeps each processor on a shard of its own most
// of the time, without asking the runtime which processor it is on.
func (s *Stats) shard(op *cachekit.Op) *shard {
	if len(s.shards) == 1 {
		return &s.shards[0]
	}
	p := uint64(uintptr(unsafe.Pointer(op)))
	return &s.shards[(p*0x9E3779B97F4A7C15)>>s.shift]
}

// ProcessOp counts op, times it when sampling says so, and returns its
// error unchanged.
func (s *Stats) ProcessOp(ctx context.Context, op *cachekit.Op) error {
	k := op.Kind()
	if !s.timeAll[k].Load() && rand.Uint64()&s.mask != 0 {
		err := op.Next(ctx)
		s.count(op)
		return err
	}
	start := time.Now()
	err := op.Next(ctx)
	d := time.Since(start)
	s.count(op)
	s.hist[k].observe(d)
	if all := s.adaptive && d >= FastThreshold; s.timeAll[k].Load() != all {
		s.timeAll[k].Store(all)
	}
	return err
}

// count adds op's outcome to its counters.
func (s *Stats) count(op *cachekit.Op) {
	c := &s.shard(op).ops[op.Kind()]
	o := op.Outcome()
	c.calls[o].Add(1)
	if op.Kind() == cachekit.OpGetMany && o == cachekit.OutcomeOK {
		h, m := valueKeys(op)
		if h > 0 {
			c.keyHits.Add(uint64(h))
		}
		if m > 0 {
			c.keyMisses.Add(uint64(m))
		}
	}
}

// valueKeys returns how many of the keys a GetMany read were found and not
// found, leaving out the stamps that a Typed reads to check tags (keys with
// cachekit.TagKeyPrefix): they are its bookkeeping, not values a caller
// asked for, and the caller's outcome is already counted on the value's key
// (with EventTagMiss when a stamp turns a hit into a miss).
func valueKeys(op *cachekit.Op) (hits, misses int) {
	stamps := 0
	for _, k := range op.Keys {
		if strings.HasPrefix(k, cachekit.TagKeyPrefix) {
			stamps++
		}
	}
	if stamps == 0 {
		hits = op.Hits()
		return hits, len(op.Keys) - hits
	}
	for _, k := range op.Keys {
		if strings.HasPrefix(k, cachekit.TagKeyPrefix) {
			continue
		}
		if _, ok := op.Values[k]; ok {
			hits++
		} else {
			misses++
		}
	}
	return hits, misses
}

// The events Stats counts by kind; the last counts every other kind.
const (
	evLoad = iota
	evLoadError
	evStampedeJoin
	evStaleServed
	evEarlyRefresh
	evDecodeError
	evLocalHit
	evTagMiss
	evOther
	numEvents
)

// OnEvent counts ev by its kind.
func (s *Stats) OnEvent(_ context.Context, ev cachekit.Event) {
	i := evOther
	switch ev.Kind {
	case cachekit.EventLoad:
		i = evLoad
	case cachekit.EventLoadError:
		i = evLoadError
	case cachekit.EventStampedeJoin:
		i = evStampedeJoin
	case cachekit.EventStaleServed:
		i = evStaleServed
	case cachekit.EventEarlyRefresh:
		i = evEarlyRefresh
	case cachekit.EventDecodeError:
		i = evDecodeError
	case cachekit.EventLocalHit:
		i = evLocalHit
	case cachekit.EventTagMiss:
		i = evTagMiss
	}
	s.events[i].Add(1)
}

// OpStats are the counts and latencies of one operation kind.
type OpStats struct {
	Count  uint64 // calls that ended, whatever their outcome
	Hits   uint64 // keys found (Get, GetMany, Exists)
	Misses uint64 // keys not found (Get, GetMany, Exists)
	Errors uint64 // calls that failed (not counting misses and Add's ErrExists)

	// P50 and P99 are the median and the 99th percentile of the timed
	// calls' durations (see Options.TimeEvery), or 0 before any call was
	// timed.
	P50, P99 time.Duration
}

// Snapshot is a copy of the counts of a [Stats] at one moment. It is a
// plain value: keep it, compare it, print it.
type Snapshot struct {
	Ops uint64 // operations of every kind
	// Hits are the keys found by Get, GetMany and Exists, less those whose
	// value did not decode (DecodeErrors) or whose tag was invalidated
	// (TagMisses), which count as Misses: the reader did not get a value;
	// plus the reads a local tier answered (LocalHits). So Hits and Misses
	// are what the callers got, and may differ by those counts from the
	// sums of the per-method counts below, which are what the cache
	// answered.
	Hits     uint64
	Misses   uint64  // keys not found, by Get, GetMany and Exists, values that did not decode, and tag misses
	HitRatio float64 // Hits / (Hits + Misses), or 0 when both are 0
	Errors   uint64  // failed operations of every kind

	// Per operation kind, named after the Cache method.
	Get, GetMany, Set, SetMany, Add, Delete, Exists, Increment, Expire, Clear OpStats
	// CompareAndDelete counts the optional interface's calls (lease and
	// lock releases), seen when the hooked cache implements
	// cachekit.CompareAndDeleter. They are neither hits nor misses.
	CompareAndDelete OpStats
	// CompareAndSwap counts the optional interface's calls (Typed.Update,
	// lock extension), seen when the hooked cache implements
	// cachekit.CompareAndSwapper. They are neither hits nor misses.
	CompareAndSwap OpStats

	// Events reported by the layers above the cache (cachekit.EventKind).
	Loads          uint64 // EventLoad: a loader returned a value
	LoadErrors     uint64 // EventLoadError: a loader failed or panicked
	StampedeJoins  uint64 // EventStampedeJoin: a caller waited for another's load
	StaleServed    uint64 // EventStaleServed: a stale value was returned
	EarlyRefreshes uint64 // EventEarlyRefresh: a value was refreshed before expiry
	DecodeErrors   uint64 // EventDecodeError: a stored value did not decode
	LocalHits      uint64 // EventLocalHit: a Typed's local tier answered a read (counted in Hits)
	TagMisses      uint64 // EventTagMiss: an entry whose tag was invalidated (counted in Misses)
	OtherEvents    uint64 // events of any other kind
}

// ByKind returns the stats of one operation kind: s.ByKind(cachekit.OpGet)
// is s.Get.
func (s Snapshot) ByKind(k cachekit.OpKind) OpStats {
	if p := s.byKind(k); p != nil {
		return *p
	}
	return OpStats{}
}

func (s *Snapshot) byKind(k cachekit.OpKind) *OpStats {
	switch k {
	case cachekit.OpGet:
		return &s.Get
	case cachekit.OpGetMany:
		return &s.GetMany
	case cachekit.OpSet:
		return &s.Set
	case cachekit.OpSetMany:
		return &s.SetMany
	case cachekit.OpAdd:
		return &s.Add
	case cachekit.OpDelete:
		return &s.Delete
	case cachekit.OpExists:
		return &s.Exists
	case cachekit.OpIncrement:
		return &s.Increment
	case cachekit.OpExpire:
		return &s.Expire
	case cachekit.OpClear:
		return &s.Clear
	case cachekit.OpCompareAndDelete:
		return &s.CompareAndDelete
	case cachekit.OpCompareAndSwap:
		return &s.CompareAndSwap
	}
	return nil // a kind added to cachekit after this version: counted in the totals only
}

// Snapshot returns the current counts. A call is counted when it ends, so
// operations running meanwhile are not counted yet.
func (s *Stats) Snapshot() Snapshot {
	var snap Snapshot
	for k := range cachekit.NumOpKinds {
		var os OpStats
		for i := range s.shards {
			c := &s.shards[i].ops[k]
			for o := range c.calls {
				os.Count += c.calls[o].Load()
			}
			os.Hits += c.calls[cachekit.OutcomeHit].Load() + c.keyHits.Load()
			os.Misses += c.calls[cachekit.OutcomeMiss].Load() + c.keyMisses.Load()
			os.Errors += c.calls[cachekit.OutcomeError].Load()
		}
		os.P50, os.P99 = s.hist[k].quantiles(0.50, 0.99)
		if p := snap.byKind(cachekit.OpKind(k)); p != nil {
			*p = os
		}
		snap.Ops += os.Count
		snap.Hits += os.Hits
		snap.Misses += os.Misses
		snap.Errors += os.Errors
	}
	snap.Loads = s.events[evLoad].Load()
	snap.LoadErrors = s.events[evLoadError].Load()
	snap.StampedeJoins = s.events[evStampedeJoin].Load()
	snap.StaleServed = s.events[evStaleServed].Load()
	snap.EarlyRefreshes = s.events[evEarlyRefresh].Load()
	snap.DecodeErrors = s.events[evDecodeError].Load()
	snap.LocalHits = s.events[evLocalHit].Load()
	snap.TagMisses = s.events[evTagMiss].Load()
	snap.OtherEvents = s.events[evOther].Load()
	// A value found but not decodable, or whose tag was invalidated, was a
	// hit for the cache and a miss for its reader. (The event follows the
	// read's count, so it can only lead it while a snapshot is being
	// taken: hence the bound.)
	moved := min(snap.DecodeErrors+snap.TagMisses, snap.Hits)
	snap.Hits -= moved
	snap.Misses += moved
	// A local-tier hit made no cache operation, but the caller got a
	// value: a hit.
	snap.Hits += snap.LocalHits
	if r := snap.Hits + snap.Misses; r > 0 {
		snap.HitRatio = float64(snap.Hits) / float64(r)
	}
	return snap
}

// Reset sets every count to zero. Operations running meanwhile may be
// counted before or after the reset, or partly in both.
func (s *Stats) Reset() {
	for i := range s.shards {
		for k := range s.shards[i].ops {
			c := &s.shards[i].ops[k]
			for o := range c.calls {
				c.calls[o].Store(0)
			}
			c.keyHits.Store(0)
			c.keyMisses.Store(0)
		}
	}
	for k := range s.hist {
		s.hist[k].reset()
	}
	s.timeFirst()
	for i := range s.events {
		s.events[i].Store(0)
	}
}

// The histogram's buckets: durations in nanoseconds, exact below 8ns, then
// eight buckets per power of two up to 2^maxExp ns (about 18 minutes);
// longer durations go into the last bucket.
const (
	subBits    = 3
	subBuckets = 1 << subBits
	maxExp     = 40
	numBuckets = (maxExp-subBits+1)*subBuckets + subBuckets
)

type histogram struct {
	b [numBuckets]atomic.Uint64
}

// bucket returns the index of the bucket that holds ns.
func bucket(ns uint64) int {
	if ns < subBuckets {
		return int(ns)
	}
	e := bits.Len64(ns) - 1 // ns is in [2^e, 2^(e+1))
	if e > maxExp {
		return numBuckets - 1
	}
	return (e-subBits+1)*subBuckets + int((ns>>(e-subBits))&(subBuckets-1))
}

// bucketValue returns the middle of bucket i's range, in nanoseconds.
func bucketValue(i int) uint64 {
	if i < subBuckets {
		return uint64(i)
	}
	e := i/subBuckets + subBits - 1
	m := uint64(i % subBuckets)
	width := uint64(1) << (e - subBits)
	return (subBuckets+m)*width + width/2
}

func (h *histogram) observe(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.b[bucket(uint64(d))].Add(1)
}

func (h *histogram) reset() {
	for i := range h.b {
		h.b[i].Store(0)
	}
}

// quantiles returns the q1 and q2 quantiles of the observations, or zeros
// when there are none.
func (h *histogram) quantiles(q1, q2 float64) (time.Duration, time.Duration) {
	var counts [numBuckets]uint64
	var total uint64
	for i := range h.b {
		counts[i] = h.b[i].Load()
		total += counts[i]
	}
	if total == 0 {
		return 0, 0
	}
	return quantile(&counts, total, q1), quantile(&counts, total, q2)
}

func quantile(counts *[numBuckets]uint64, total uint64, q float64) time.Duration {
	rank := uint64(math.Ceil(q * float64(total)))
	rank = max(rank, 1)
	var cum uint64
	for i, n := range counts {
		cum += n
		if cum >= rank {
			return time.Duration(bucketValue(i))
		}
	}
	return time.Duration(bucketValue(numBuckets - 1))
}
