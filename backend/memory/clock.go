package memory

import (
	"sync/atomic"
	"time"
	"weak"
)

// cleanUpInterval is how often the storage removes expired entries that no
// write has removed yet, as otter's own periodic clean-up does.
const cleanUpInterval = time.Second

// clock is a store's time source: nanoseconds since the store was made,
// plus one so that no reading is 0 (which means "no expiry").
//
// Deadlines are precise readings. The engine reads the clock through
// NowNano on every operation, and a precise reading is a large part of the
// cost of a hit, so the engine gets a coarse reading instead: the precise
// time as of the last advance, which the clean-up goroutine makes every
// second. The coarse time is never ahead of the precise time, so the engine
// never expires an entry early; it may remove one late, so the cache checks
// an entry's deadline itself on every read, with a precise reading, which
// only entries with a deadline pay for.
type clock struct {
	start  time.Time // with a monotonic reading
	coarse atomic.Int64
}

func newClock() *clock {
	c := &clock{start: time.Now()}
	c.advance()
	return c
}

// precise returns the current time.
func (c *clock) precise() int64 {
	return int64(time.Since(c.start)) + 1
}

// advance brings the coarse time up to the precise time. It never moves it
// back.
func (c *clock) advance() {
	now := c.precise()
	for {
		old := c.coarse.Load()
		if now <= old || c.coarse.CompareAndSwap(old, now) {
			return
		}
	}
}

// NowNano implements otter.Clock: it returns the coarse time.
func (c *clock) NowNano() int64 {
	return c.coarse.Load()
}

// Tick implements otter.Clock. It returns no ticks: otter then starts no
// periodic clean-up of its own, as cleanUpLoop runs one, which first
// advances the clock.
func (c *clock) Tick(time.Duration) <-chan time.Time {
	return nil
}

// cleanUpLoop advances the store's clock and lets the engine remove expired
// entries every cleanUpInterval, until stop is closed or the store is
// garbage (a cache nobody closed), and closes done when it returns. It holds
// the store only during a clean-up, so that it does not keep it reachable.
func cleanUpLoop(ws weak.Pointer[store], stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(cleanUpInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			s := ws.Value()
			if s == nil {
				return
			}
			s.clock.advance()
			s.c.CleanUp()
		}
	}
}
