package memory

import "time"

// Internals for the external tests.

// WeightedSize returns the total weight of the entries after pending
// maintenance has run.
func WeightedSize(c *Cache) uint64 {
	c.s.c.CleanUp()
	return c.s.c.WeightedSize()
}

// EntryCount returns the number of entries after pending maintenance has run.
func EntryCount(c *Cache) int {
	c.s.c.CleanUp()
	return c.s.c.EstimatedSize()
}

// Limits returns the bounds New derived from the options.
func Limits(c *Cache) (maxWeight uint64, minWeight uint32, maxValue int64, ns string) {
	return c.s.maxWeight, c.s.minWeight, c.s.maxValue, c.ns
}

// Freeze stops c's clean-up goroutine, so that the engine's coarse clock no
// longer moves and Advance may change the clock.
func Freeze(c *Cache) {
	c.s.stopCleanUp()
}

// Advance moves the precise clock of c, a frozen cache, forward by d, and
// not the engine's coarse clock, so that entries expire for the cache while
// the engine still holds them. It must not run concurrently with other calls
// of c.
func Advance(c *Cache, d time.Duration) {
	c.s.clock.start = c.s.clock.start.Add(-d)
}

// Held reports whether the engine still holds key, expired or not.
func Held(c *Cache, k string) bool {
	_, ok := c.s.c.GetEntryQuietly(c.key(k))
	return ok
}

// EngineKey returns the engine's key for k in c's namespace.
func EngineKey(c *Cache, k string) string {
	return c.key(k)
}
