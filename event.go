package cachekit

import (
	"context"
	"time"
)

// EventKind names something that happened above the byte-level cache: in
// [Typed], in the decorator package, or in another layer built on a Cache.
type EventKind string

// The events that cachekit's own layers report.
const (
	// EventLoad: a loader (GetOrLoad's, or a decorated function) returned a
	// value. Event.Duration is how long it ran.
	EventLoad EventKind = "load"
	// EventLoadError: a loader returned an error or panicked.
	EventLoadError EventKind = "load_error"
	// EventStampedeJoin: a caller found a load for its key already running
	// and waited for it instead of starting another.
	EventStampedeJoin EventKind = "stampede_join"
	// EventStaleServed: a stale value was returned because a fresh one could
	// not be had in time (fail-safe, soft timeout).
	EventStaleServed EventKind = "stale_served"
	// EventEarlyRefresh: a value was refreshed in the background before it
	// expired.
	EventEarlyRefresh EventKind = "early_refresh"
	// EventDecodeError: a stored value could not be decoded.
	EventDecodeError EventKind = "decode_error"
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
