package bench

// The cost of hooks on the memory backend, side by side:
//
//	cd bench && go test -run '^$' -bench 'Hooks' -benchmem -count=5
//
// Rows (each a memory.Get hit of a 100-byte value, then the same in
// parallel on every processor):
//
//	bare              memory.New(nil) itself: what WithHooks(c) with no hooks returns
//	passthrough       WithHooks(c, a hook that only calls op.Next)
//	stats             WithHooks(c, stats.New(nil)): adaptive latency sampling (the default)
//	stats-time-all    WithHooks(c, stats.New(&stats.Options{TimeEvery: 1})): every call timed
//	logging-disabled  WithHooks(c, logging.New(...)) on a handler at Info: the hook's
//	                  Debug records are off, its Error records on (the default setup)
//	logging-off       the same with every level of the hook disabled
//
// The budget: with the stats plugin, at most 50 ns and zero
// allocations added to a memory Get.
//
// On a shared or busy machine the rows above drift with the load of the
// moment, which can exceed the difference being measured.
// BenchmarkHooksAdded measures the difference directly: it alternates
// blocks of 1000 Gets on the bare cache and on the hooked one and reports
// the medians of the blocks (bare-ns/op, hooked-ns/op) and the median of
// the paired differences (added-ns/op), which load that changes more
// slowly than a block (about 0.1ms) cancels out of. Its own ns/op column
// counts both caches' Gets and means nothing. BenchmarkHooksAddedParallel
// does the same on every processor at once.

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
	"github.com/cachekit/cachekit/plugin/logging"
	"github.com/cachekit/cachekit/plugin/stats"
)

func hookConfigs() []struct {
	name  string
	hooks func() []cachekit.Hook
} {
	return []struct {
		name  string
		hooks func() []cachekit.Hook
	}{
		{"bare", func() []cachekit.Hook { return nil }},
		{"passthrough", func() []cachekit.Hook {
			return []cachekit.Hook{cachekit.HookFunc(func(ctx context.Context, op *cachekit.Op) error { return op.Next(ctx) })}
		}},
		{"stats", func() []cachekit.Hook { return []cachekit.Hook{stats.New(nil)} }},
		{"stats-time-all", func() []cachekit.Hook { return []cachekit.Hook{stats.New(&stats.Options{TimeEvery: 1})} }},
		{"logging-disabled", func() []cachekit.Hook {
			logger := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
			return []cachekit.Hook{logging.New(logger, nil)}
		}},
		{"logging-off", func() []cachekit.Hook {
			logger := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError + 4}))
			return []cachekit.Hook{logging.New(logger, nil)}
		}},
	}
}

func hookedMemory(b *testing.B, hooks []cachekit.Hook) cachekit.Cache {
	m := memory.New(nil)
	b.Cleanup(func() { m.Close() })
	if err := m.Set(context.Background(), "key", make([]byte, 100), 0); err != nil {
		b.Fatal(err)
	}
	return cachekit.WithHooks(m, hooks...)
}

func BenchmarkHooksGet(b *testing.B) {
	ctx := context.Background()
	for _, cfg := range hookConfigs() {
		b.Run(cfg.name, func(b *testing.B) {
			c := hookedMemory(b, cfg.hooks())
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := c.Get(ctx, "key"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkHooksGetParallel(b *testing.B) {
	ctx := context.Background()
	for _, cfg := range hookConfigs() {
		b.Run(cfg.name, func(b *testing.B) {
			c := hookedMemory(b, cfg.hooks())
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.Get(ctx, "key"); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func BenchmarkHooksAdded(b *testing.B) {
	ctx := context.Background()
	const block = 1000
	for _, cfg := range hookConfigs()[1:] {
		b.Run(cfg.name, func(b *testing.B) {
			hooked := hookedMemory(b, cfg.hooks())
			bare := hooked.(interface{ Unwrap() cachekit.Cache }).Unwrap()
			run := func(c cachekit.Cache) float64 {
				start := time.Now()
				for range block {
					if _, err := c.Get(ctx, "key"); err != nil {
						b.Fatal(err)
					}
				}
				return float64(time.Since(start).Nanoseconds()) / block
			}
			var bareNs, hookedNs, added []float64
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += 2 * block {
				x, y := run(bare), run(hooked)
				bareNs, hookedNs, added = append(bareNs, x), append(hookedNs, y), append(added, y-x)
			}
			b.StopTimer()
			b.ReportMetric(median(bareNs), "bare-ns/op")
			b.ReportMetric(median(hookedNs), "hooked-ns/op")
			b.ReportMetric(median(added), "added-ns/op")
		})
	}
}

// BenchmarkHooksAddedParallel is BenchmarkHooksAdded with every processor
// running Gets: each goroutine alternates its own blocks, so that both
// caches see the same contention, and the medians are over all blocks.
func BenchmarkHooksAddedParallel(b *testing.B) {
	for _, cfg := range hookConfigs()[1:] {
		b.Run(cfg.name, func(b *testing.B) { addedParallel(b, cfg.hooks()) })
	}
}

func addedParallel(b *testing.B, hooks []cachekit.Hook) {
	ctx := context.Background()
	const block = 1000
	hooked := hookedMemory(b, hooks)
	bare := hooked.(interface{ Unwrap() cachekit.Cache }).Unwrap()
	var (
		mu                      sync.Mutex
		bareNs, hookedNs, added []float64
	)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var bs, hs, ds []float64
		run := func(c cachekit.Cache) (float64, bool) {
			start := time.Now()
			for range block {
				if !pb.Next() {
					return 0, false
				}
				if _, err := c.Get(ctx, "key"); err != nil {
					b.Error(err)
					return 0, false
				}
			}
			return float64(time.Since(start).Nanoseconds()) / block, true
		}
		for {
			x, ok := run(bare)
			if !ok {
				break
			}
			y, ok := run(hooked)
			if !ok {
				break
			}
			bs, hs, ds = append(bs, x), append(hs, y), append(ds, y-x)
		}
		mu.Lock()
		bareNs, hookedNs, added = append(bareNs, bs...), append(hookedNs, hs...), append(added, ds...)
		mu.Unlock()
	})
	b.StopTimer()
	b.ReportMetric(median(bareNs), "bare-ns/op")
	b.ReportMetric(median(hookedNs), "hooked-ns/op")
	b.ReportMetric(median(added), "added-ns/op")
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	xs = slices.Clone(xs)
	slices.Sort(xs)
	return xs[len(xs)/2]
}
