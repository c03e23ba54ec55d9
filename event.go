package cachekit

import (
	"context"
	"time"
)

// EventKind names something that happened above the byte-level cache: in
// [Typed], in the decorator package, or in another layer built on a Cache.
//
// Events complement the operations that hooks see: an operation says what
// the cache answered, an event what the layer above made of it. The
// definitions below are precise enough to count with: each says who reports
// it, how often, and how it relates to the operations around it. Events are
// reported synchronously, on the goroutine of the layer that reports them
// (the caller's, or the goroutine running a load, as each kind says).
type EventKind string

// The events that cachekit's own layers report.
const (
	// EventLoad: a loader (GetOrLoad's, or a decorated function) returned a
	// value. Reported once per call of the loader, however many callers
	// share its result, from the goroutine running the load and with the
	// load's context (the first caller's values). Event.Duration is how
	// long the loader ran. The Set of the loaded value follows it, in the
	// background for Typed.GetOrLoad.
	EventLoad EventKind = "load"

	// EventLoadError: a loader returned an error, panicked or called
	// runtime.Goexit; Event.Err is the error (for the last two, one for
	// which errors.Is(err, ErrLoaderPanic) reports true). Reported once per
	// call of the loader, like EventLoad, and nothing is stored.
	EventLoadError EventKind = "load_error"

	// EventStampedeJoin: a caller whose cache read missed got its value
	// from a load that another caller made, instead of loading itself: it
	// found a load of its key running and waited for it, or (Typed) its
	// read overlapped a load of the key that finished meanwhile and it took
	// that load's value. Reported once per such caller, from the caller's
	// goroutine, whether the shared load succeeded or not. With EventLoad
	// and EventLoadError it accounts for the misses that GetOrLoad acted
	// on: the caller whose miss started a load is counted by that load's
	// event, every caller that shared it by an EventStampedeJoin.
	EventStampedeJoin EventKind = "stampede_join"

	// EventStaleServed: a stale value was returned because a fresh one could
	// not be had in time (fail-safe, soft timeout).
	EventStaleServed EventKind = "stale_served"

	// EventEarlyRefresh: a value was refreshed in the background before it
	// expired.
	EventEarlyRefresh EventKind = "early_refresh"

	// EventDecodeError: a stored value could not be decoded (corrupt, or
	// written with another serializer or type). Reported once per
	// undecodable value read, from the reading caller's goroutine, right
	// after the read: Event.Key is its key and Event.Err wraps ErrDecode.
	//
	// The read that returned the bytes (a Get, or one key of a GetMany)
	// reached the hooks as a hit, since the cache found a value; to the
	// caller it was not one (Typed.Get returns ErrDecode, GetOrLoad loads
	// as on a miss). A hook counting hits should therefore count each
	// decode_error as one hit less and one miss more, as plugin/stats does
	// in its totals.
	EventDecodeError EventKind = "decode_error"

	// EventLocalHit: a read of a [Typed] with a local tier
	// (TypedOptions.Local) found its key in process memory and made no
	// cache operation. Reported once per key found, from the reading
	// caller's goroutine; Event.Key is the key. Hooks see no operation for
	// such a read, so a hook counting hits should count each local_hit as
	// one hit more.
	EventLocalHit EventKind = "local_hit"

	// EventLocalMiss: a read of a Typed with a local tier did not find its
	// key in process memory and goes on to the cache, whose operation the
	// hooks see as usual (a hit or a miss there). Reported once per key,
	// before that operation; Event.Key is the key. It is for the local
	// tier's own hit ratio, not a miss of the cache.
	EventLocalMiss EventKind = "local_miss"

	// EventInvalidation: a Typed with a local tier received an
	// invalidation from its [Backplane] that concerns it (its namespace,
	// not its own message) and dropped the local entries it names.
	// Reported once per message, from the backplane's delivery goroutine
	// (for [NewMemoryBackplane], the publisher's) with a background
	// context. Event.Key is the key when the message names exactly one,
	// else empty (several keys, a Clear, a tag, or a backplane reset).
	EventInvalidation EventKind = "invalidation"

	// EventBackplaneError: the [Backplane] of a Typed failed: a Publish
	// after a write, the subscription (a lost connection), or
	// BackplaneWatcher.Watch. Event.Err is the error, which also goes to
	// TypedOptions.OnError. It never fails the read or write around it:
	// the write is in the cache, and the other processes' local entries
	// stay bounded by LocalOptions.TTL. Reported once per failure, from the
	// writer's goroutine for a Publish, from the backplane's for the
	// subscription, with Event.Key empty.
	EventBackplaneError EventKind = "backplane_error"

	// EventTagMiss: a read (Typed.Get, GetMany, GetOrLoad) found an entry
	// written with tags ([WithTags]) of which one was invalidated since
	// ([Typed.InvalidateTags]), or whose stamp the cache lost: to the
	// caller it is a miss. Reported once per such entry, from the reading
	// caller's goroutine, after the reads of the entry and of its tags'
	// stamps; Event.Key is its key. As for decode_error, the hooks saw
	// the entry's read as a hit: count each tag_miss as one hit less and
	// one miss more.
	EventTagMiss EventKind = "tag_miss"
)

// Event describes one occurrence of an [EventKind].
type Event struct {
	Kind     EventKind
	Key      string        // the cache key concerned, if one
	Err      error         // the error, for error kinds
	Duration time.Duration // how long the work took, where that applies
}

// EventHandler is implemented by caches that want events from the layers
// above them. The cache returned by [WithHooks] implements it and passes each
// event to the hooks that implement [EventHook]. HandleEvent must be safe for
// concurrent use and should return quickly.
type EventHandler interface {
	HandleEvent(ctx context.Context, ev Event)
}

// Emit reports ev to c if c handles events, and does nothing otherwise. Layers
// built on a Cache (Typed, the decorator, yours) call it.
func Emit(ctx context.Context, c Cache, ev Event) {
	if h, ok := c.(EventHandler); ok {
		h.HandleEvent(ctx, ev)
	}
}
