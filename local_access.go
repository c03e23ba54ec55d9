package cachekit

import (
	"context"
	"hash/maphash"
	"math"
	"time"
)

// LocalTier is the local tier of a [Typed] (TypedOptions.Local) as the
// layers built on Typed see it: the decorator package serves its hits from
// it. Application code has no need of it; Typed.Get, GetMany and
// GetOrLoad already read through the local tier.
//
// It holds two kinds of entries under the cache's keys:
//
//   - shared entries, values in the Typed's own format: what Typed.Get
//     keeps, and what [LocalTier.Get] returns. A layer whose stored bytes
//     are exactly the Typed's encoding (the decorator's plain format)
//     shares them with the Typed: a value kept by one is a hit for the
//     other.
//   - private entries, kept by a layer with a format of its own (the
//     decorator's envelope): the decoded value and the layer's stored
//     bytes, returned by [LocalTier.GetPrivate] only. Typed's own reads
//     never return them: they drop them and read the cache, as they would
//     without a local tier.
//
// Both kinds share the tier's bounds (LocalOptions.MaxEntries and TTL) and
// its coherence: every write through the Typed or its Cache(), and every
// invalidation from its Backplane, drops the entries of the keys it
// touches, whatever their kind, and Typed.Close empties the tier.
//
// A layer fills the tier only through the methods below, which keep
// Typed's rule: an entry is kept only if no write or invalidation of its
// key happened since the value was known to be current.
type LocalTier[V any] struct {
	t *Typed[V]
}

// LocalTier returns t's local tier, or nil when t has none.
func (t *Typed[V]) LocalTier() *LocalTier[V] {
	if t.local == nil {
		return nil
	}
	return &LocalTier[V]{t: t}
}

// Copy reports whether the tier was configured with LocalOptions.Copy: a
// layer must then decode a fresh value from the bytes of a private entry
// rather than return the shared one.
func (l *LocalTier[V]) Copy() bool { return l.t.local.copy }

// Get returns the value of key's shared entry, as Typed.Get would return
// it from the tier (with LocalOptions.Copy, a fresh decode), and whether
// there was one. It reports no event: the caller does.
func (l *LocalTier[V]) Get(key string) (V, bool) {
	var zero V
	e, ok := l.t.local.get(key)
	if !ok {
		return zero, false
	}
	if !l.t.local.copy {
		return e.v, true
	}
	var v V
	if err := l.t.decodePayload(e.b, &v); err != nil {
		l.t.local.evict(key)
		return zero, false
	}
	return v, true
}

// Token returns key's coherence token: it changes with every write and
// invalidation of key (and of every key: Clear, tags, a backplane reset)
// that this Typed sees. A layer reads it before reading the cache and gives
// it to Fill or FillPrivate, which keep the value only if it is unchanged.
func (l *LocalTier[V]) Token(key string) uint64 { return l.t.co.token(key) }

// Fill keeps v, decoded from the bytes b that a read of key returned when
// its token was token, as key's shared entry, for at most ttl (0: unknown
// or none) and LocalOptions.TTL. Nothing is kept if a write or
// invalidation of key came after token, or if b carries tags (see
// [WithTags]): a layer that does not check tags must not make a tagged
// value a hit for Typed.Get.
func (l *LocalTier[V]) Fill(key string, v V, b []byte, ttl time.Duration, token uint64) {
	payload, tags, _, _ := openEnvelope(b)
	if len(tags) > 0 || ttl < 0 {
		return
	}
	l.t.fill(key, v, payload, nil, ttl, token, true)
}

// GetPrivate returns the value and stored bytes of key's private entry, and
// whether there was one (a live one: not past its local lifetime at now, in
// a tier that is not closed). now is the current time, time.Now(), which
// a caller that needs the time anyway passes so that the clock is read
// once. The bytes are those given to FillPrivate, Set or SetMany; the
// caller must not modify them.
func (l *LocalTier[V]) GetPrivate(key string, now time.Time) (V, []byte, bool) {
	var zero V
	lt := l.t.local
	e, ok := lt.c.GetIfPresent(key)
	if !ok || e.exp >= 0 {
		return zero, nil, false // none, or a shared entry
	}
	if int64(now.Sub(clockBase)) >= -e.exp || lt.closed.Load() {
		lt.evict(key)
		return zero, nil, false
	}
	return e.v, e.b, true
}

// FillPrivate keeps v and b as key's private entry, for at most ttl (0:
// unknown or none) and LocalOptions.TTL, unless a write or invalidation of
// key came after token.
func (l *LocalTier[V]) FillPrivate(key string, v V, b []byte, ttl time.Duration, token uint64) {
	if ttl < 0 {
		return
	}
	l.fillPrivate(key, v, b, ttl, token)
}

// fillPrivate stores a private entry: its deadline is negated, so that
// localTier.get, which Typed's reads use, sees it as expired, drops it and
// reads the cache; GetPrivate negates it back. Private deadlines are on
// the real monotonic clock (monotonicNow, or time.Now().Sub(clockBase) in
// GetPrivate), whatever clock the tier's shared entries use.
func (l *LocalTier[V]) fillPrivate(key string, v V, b []byte, ttl time.Duration, want uint64) {
	lt, co := l.t.local, l.t.co
	if lt.closed.Load() || co.token(key) != want {
		return
	}
	now := monotonicNow()
	exp := now + min(int64(lt.lifetime(ttl)), math.MaxInt64-now)
	lt.c.Set(key, &localEntry[V]{v: v, b: b, exp: -exp})
	if co.token(key) != want { // a write or invalidation raced the put
		lt.evict(key)
	}
}

// Set stores b under key with ttl through t.Cache() (so the write drops
// key locally and is published on the Backplane, as any write through
// it), and then, if it succeeded and no other write or invalidation of key
// overlapped it, keeps v locally: as key's private entry with private set
// (b is then the layer's own format), else as its shared entry (b must be
// the Typed's encoding of v). It returns the write's error.
func (l *LocalTier[V]) Set(ctx context.Context, key string, b []byte, ttl time.Duration, v V, private bool) error {
	w := l.mark(key)
	err := l.t.c.Set(ctx, key, b, ttl)
	if err == nil {
		l.keep(w, key, v, b, ttl, private)
	}
	return err
}

// SetMany is Set for several keys, written with one SetMany: values[k] is
// the value that items[k] encodes. A key missing from values is written
// but not kept.
func (l *LocalTier[V]) SetMany(ctx context.Context, items map[string][]byte, ttl time.Duration, values map[string]V, private bool) error {
	keys := make([]string, 0, len(items))
	for k := range items {
		keys = append(keys, k)
	}
	w := l.mark(keys...)
	err := l.t.c.SetMany(ctx, items, ttl)
	if err != nil {
		return err
	}
	for k, b := range items {
		if v, ok := values[k]; ok {
			l.keep(w, k, v, b, ttl, private)
		}
	}
	return nil
}

// keep fills key after a write marked by w, if no other write or
// invalidation overlapped it. The token is read before the check, so that
// a change after the check makes the fill's own check fail.
func (l *LocalTier[V]) keep(w writeMark, key string, v V, b []byte, ttl time.Duration, private bool) {
	tok := l.t.co.token(key)
	if !w.alone(key) {
		return
	}
	if private {
		l.fillPrivate(key, v, b, ttl, tok)
		return
	}
	payload, tags, _, _ := openEnvelope(b)
	if len(tags) == 0 {
		l.t.fill(key, v, payload, nil, ttl, tok, true)
	}
}

// writeMark is the state of the coherence generations of some keys before
// a write of them through the coherent wrapper, which bumps each key's
// stripe once before and once after the write.
type writeMark struct {
	co    *coherence
	all   uint64
	gens  map[uint64]uint64 // stripe -> its generation before the write
	count map[uint64]uint64 // stripe -> keys of the write in it
}

func (l *LocalTier[V]) mark(keys ...string) writeMark {
	co := l.t.co
	w := writeMark{co: co, gens: make(map[uint64]uint64, len(keys)), count: make(map[uint64]uint64, len(keys))}
	for _, k := range keys {
		s := maphash.String(co.seed, k) % coherenceStripes
		if _, ok := w.gens[s]; !ok {
			w.gens[s] = co.gens[s].Load()
		}
		w.count[s]++
	}
	w.all = co.all.Load()
	return w
}

// alone reports, after the write, whether key's stripe saw nothing but the
// write's own bumps: no other write or invalidation of key (nor of a key
// sharing its stripe) overlapped it.
func (w writeMark) alone(key string) bool {
	s := maphash.String(w.co.seed, key) % coherenceStripes
	return w.co.all.Load() == w.all && w.co.gens[s].Load()-w.gens[s] == 2*w.count[s]
}
