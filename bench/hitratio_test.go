package bench

// Hit ratio on the workload: accesses drawn from a Zipf distribution
// (s=1.01) over 1M keys from a fixed seed, a capacity of 100k entries,
// get-or-set on a miss. The first 1M accesses warm the cache up and are not
// counted; the next 2M are. (Counted from a cold start, the compulsory misses
// of a 1M-key space hide the policies' differences: over the first 2M
// accesses alone, otter and LRU both score about 78%, as W-TinyLFU's
// frequency sketch has not learned the distribution yet.) The issue asks for
// at least 80% from the memory backend; raw otter (W-TinyLFU, which the
// backend uses) measures about 81%, and a plain LRU about 79%.
//
//	go test -run TestMemoryHitRatio -v .
//	go test -run '^$' -bench BenchmarkMemoryHitRatio -count 5 .

import (
	"container/list"
	"context"
	"errors"
	"testing"

	"github.com/maypok86/otter/v2"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
)

const (
	hitRatioWarmup   = 1_000_000 // accesses that warm the cache, not counted
	hitRatioAccesses = 2_000_000 // accesses counted
)

// hitRatioPolicies are the caches compared; each replays the trace against a
// fresh cache of memCapacity entries and returns its hit ratio over the
// accesses after the first warm.
var hitRatioPolicies = []struct {
	name string
	run  func(tb testing.TB, trace []uint32, warm int) float64
}{
	{"cachekit", hitRatioBackend},
	{"otter", hitRatioOtter},
	{"lru", hitRatioLRU},
}

func hitRatioBackend(tb testing.TB, trace []uint32, warm int) float64 {
	ctx := context.Background()
	c := memory.New(&memory.Options{MaxBytes: memCapacity * memSlot, MaxEntries: memCapacity})
	defer c.Close()
	hits := 0
	for i, k := range trace {
		if i == warm {
			hits = 0
		}
		key := zipfKey(k)
		_, err := c.Get(ctx, key)
		switch {
		case err == nil:
			hits++
		case errors.Is(err, cachekit.ErrNotFound):
			if err := c.Set(ctx, key, memValue, 0); err != nil {
				tb.Fatal(err)
			}
		default:
			tb.Fatal(err)
		}
	}
	return float64(hits) / float64(len(trace)-warm)
}

func hitRatioOtter(_ testing.TB, trace []uint32, warm int) float64 {
	c := otter.Must(&otter.Options[string, []byte]{MaximumSize: memCapacity})
	hits := 0
	for i, k := range trace {
		if i == warm {
			hits = 0
		}
		key := zipfKey(k)
		if _, ok := c.GetIfPresent(key); ok {
			hits++
		} else {
			c.Set(key, memValue)
		}
	}
	return float64(hits) / float64(len(trace)-warm)
}

func hitRatioLRU(_ testing.TB, trace []uint32, warm int) float64 {
	c := newLRU(memCapacity)
	hits := 0
	for i, k := range trace {
		if i == warm {
			hits = 0
		}
		key := zipfKey(k)
		if _, ok := c.get(key); ok {
			hits++
		} else {
			c.set(key, memValue)
		}
	}
	return float64(hits) / float64(len(trace)-warm)
}

// TestMemoryHitRatio logs the hit ratio of each policy and checks the
// issue's floor for the memory backend. The trace is fixed; otter's sketch
// is seeded per process and its maintenance is asynchronous, so the ratios
// move by a few hundredths of a percent from run to run.
func TestMemoryHitRatio(t *testing.T) {
	if testing.Short() {
		t.Skip("replays 3M accesses per policy")
	}
	workload()
	trace := hitRatioTrace(hitRatioWarmup + hitRatioAccesses)
	ratios := map[string]float64{}
	for _, p := range hitRatioPolicies {
		ratios[p.name] = p.run(t, trace, hitRatioWarmup)
		t.Logf("%-9s hit ratio %.2f%%", p.name, 100*ratios[p.name])
	}
	if r := ratios["cachekit"]; r < 0.80 {
		t.Errorf("memory backend hit ratio %.2f%%; want at least 80%%", 100*r)
	}
}

// BenchmarkMemoryHitRatio reports each policy's hit ratio as a metric; one
// op is one replay of the whole trace (3M accesses), warm-up included.
func BenchmarkMemoryHitRatio(b *testing.B) {
	workload()
	trace := hitRatioTrace(hitRatioWarmup + hitRatioAccesses)
	for _, p := range hitRatioPolicies {
		b.Run("impl="+p.name, func(b *testing.B) {
			var ratio float64
			for i := 0; i < b.N; i++ {
				ratio = p.run(b, trace, hitRatioWarmup)
			}
			b.ReportMetric(ratio, "hit-ratio")
		})
	}
}

// lru is a plain least-recently-used cache of a fixed number of entries, the
// baseline the issue compares with.
type lru struct {
	cap   int
	ll    *list.List // front: most recently used
	items map[string]*list.Element
}

type lruEntry struct {
	key   string
	value []byte
}

func newLRU(capacity int) *lru {
	return &lru{cap: capacity, ll: list.New(), items: make(map[string]*list.Element, capacity)}
}

func (c *lru) get(key string) ([]byte, bool) {
	e, ok := c.items[key]
	if !ok {
		return nil, false
	}
	c.ll.MoveToFront(e)
	return e.Value.(*lruEntry).value, true
}

func (c *lru) set(key string, value []byte) {
	if e, ok := c.items[key]; ok {
		e.Value.(*lruEntry).value = value
		c.ll.MoveToFront(e)
		return
	}
	c.items[key] = c.ll.PushFront(&lruEntry{key: key, value: value})
	if c.ll.Len() > c.cap {
		last := c.ll.Back()
		c.ll.Remove(last)
		delete(c.items, last.Value.(*lruEntry).key)
	}
}
