package cachekit

// LocalLen returns how many values t's local tier holds, after the
// engine's pending maintenance (evictions) has run.
func LocalLen[V any](t *Typed[V]) int {
	if t.local == nil {
		return 0
	}
	return t.local.len()
}

// SetLocalClock replaces the clock of t's local tier (nanoseconds). Call
// it before t is used.
func SetLocalClock[V any](t *Typed[V], now func() int64) {
	t.local.now = now
}
