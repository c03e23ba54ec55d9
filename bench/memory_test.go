package bench

// The memory backend side by side with raw otter v2, the engine it is built
// on, on the workload (see memory_workload_test.go):
//
//	go test -run '^$' -bench 'BenchmarkMemory(Get|Set)' -benchmem -count 5 .
//
// BenchmarkMemoryGetParallel and BenchmarkMemoryGetSequential read the 100k
// preloaded keys along a Zipf trace (hits only), BenchmarkMemoryGetHot reads
// 1024 keys that stay in the CPU's caches, and the Set benchmarks write keys
// drawn from all 1M keys. Besides ns/op, each reports cpu-ns/op, the
// process's CPU time per op (the collector's included), which a machine
// shared with other work disturbs less than wall time.
//
// Rows:
//
//	cachekit    backend/memory: Get returns a copy of the value (the contract
//	            forbids aliasing), Set stores a copy.
//	otter       raw otter v2 with MaximumSize 100k: GetIfPresent returns the
//	            stored slice itself, Set stores the caller's slice.
//	otter-copy  raw otter plus the copy the contract requires, to show what
//	            of the difference is the copy and what is the backend.
//	cachekit-shared  backend/memory's GetShared (cachekit.SharedGetter):
//	            the stored bytes themselves, read-only, without the copy;
//	            what Typed.Get reads with. Get rows only.
//
// Both caches hold at most 100k entries: otter through MaximumSize, the
// backend through MaxEntries=100k with MaxBytes=100k*4096, so that every
// entry weighs MaxBytes/MaxEntries and the byte bound never binds first.

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/maypok86/otter/v2"

	"github.com/cachekit/cachekit/backend/memory"
)

// traceSeq hands each RunParallel goroutine a trace of its own.
var traceSeq atomic.Uint32

func newMemoryBackend(b *testing.B) *memory.Cache {
	c := memory.New(&memory.Options{MaxBytes: memCapacity * memSlot, MaxEntries: memCapacity})
	b.Cleanup(func() { c.Close() })
	return c
}

func newRawOtter() *otter.Cache[string, []byte] {
	return otter.Must(&otter.Options[string, []byte]{MaximumSize: memCapacity})
}

// preloaded returns both caches holding the memCapacity most popular keys,
// checking that they all stayed: the Get benchmarks measure hits only.
func preloaded(b *testing.B) (*memory.Cache, *otter.Cache[string, []byte]) {
	workload()
	ctx := context.Background()
	mc, oc := newMemoryBackend(b), newRawOtter()
	for rank := range uint32(memCapacity) {
		k := zipfKey(rank)
		if err := mc.Set(ctx, k, memValue, 0); err != nil {
			b.Fatal(err)
		}
		// A value of its own per key, as the backend stores: the
		// collector then has as much to mark in both.
		oc.Set(k, slices.Clone(memValue))
	}
	for rank := range uint32(memCapacity) {
		k := zipfKey(rank)
		if _, err := mc.Get(ctx, k); err != nil {
			b.Fatalf("backend lost preloaded key %q: %v", k, err)
		}
		if _, ok := oc.GetIfPresent(k); !ok {
			b.Fatalf("otter lost preloaded key %q", k)
		}
	}
	return mc, oc
}

var sinkBytes atomic.Int64 // keeps results alive without a per-op cost

func BenchmarkMemoryGetParallel(b *testing.B) {
	hits, _ := workload()
	mc, oc := preloaded(b)
	ctx := context.Background()

	b.Run("impl=cachekit", func(b *testing.B) {
		var misses atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		cpu := startCPU()
		b.RunParallel(func(pb *testing.PB) {
			trace := hits[traceSeq.Add(1)%traceCount]
			n, i := 0, 0
			for pb.Next() {
				v, err := mc.Get(ctx, zipfKey(trace[i&(traceLen-1)]))
				if err != nil {
					misses.Add(1)
				}
				n += len(v)
				i++
			}
			sinkBytes.Add(int64(n))
		})
		cpu.report(b)
		reportMisses(b, misses.Load())
	})
	b.Run("impl=cachekit-shared", func(b *testing.B) {
		var misses atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		cpu := startCPU()
		b.RunParallel(func(pb *testing.PB) {
			trace := hits[traceSeq.Add(1)%traceCount]
			n, i := 0, 0
			for pb.Next() {
				v, err := mc.GetShared(ctx, zipfKey(trace[i&(traceLen-1)]))
				if err != nil {
					misses.Add(1)
				}
				n += len(v)
				i++
			}
			sinkBytes.Add(int64(n))
		})
		cpu.report(b)
		reportMisses(b, misses.Load())
	})
	b.Run("impl=otter", func(b *testing.B) {
		var misses atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		cpu := startCPU()
		b.RunParallel(func(pb *testing.PB) {
			trace := hits[traceSeq.Add(1)%traceCount]
			n, i := 0, 0
			for pb.Next() {
				v, ok := oc.GetIfPresent(zipfKey(trace[i&(traceLen-1)]))
				if !ok {
					misses.Add(1)
				}
				n += len(v)
				i++
			}
			sinkBytes.Add(int64(n))
		})
		cpu.report(b)
		reportMisses(b, misses.Load())
	})
	b.Run("impl=otter-copy", func(b *testing.B) {
		var misses atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		cpu := startCPU()
		b.RunParallel(func(pb *testing.PB) {
			trace := hits[traceSeq.Add(1)%traceCount]
			n, i := 0, 0
			for pb.Next() {
				v, ok := oc.GetIfPresent(zipfKey(trace[i&(traceLen-1)]))
				if !ok {
					misses.Add(1)
				}
				out := make([]byte, len(v))
				copy(out, v)
				n += len(out)
				i++
			}
			sinkBytes.Add(int64(n))
		})
		cpu.report(b)
		reportMisses(b, misses.Load())
	})
}

func BenchmarkMemoryGetSequential(b *testing.B) {
	hits, _ := workload()
	mc, oc := preloaded(b)
	ctx := context.Background()
	trace := hits[0]

	b.Run("impl=cachekit", func(b *testing.B) {
		misses, n := 0, 0
		b.ReportAllocs()
		cpu := startCPU()
		for i := 0; i < b.N; i++ {
			v, err := mc.Get(ctx, zipfKey(trace[i&(traceLen-1)]))
			if err != nil {
				misses++
			}
			n += len(v)
		}
		cpu.report(b)
		sinkBytes.Add(int64(n))
		reportMisses(b, int64(misses))
	})
	b.Run("impl=cachekit-shared", func(b *testing.B) {
		misses, n := 0, 0
		b.ReportAllocs()
		cpu := startCPU()
		for i := 0; i < b.N; i++ {
			v, err := mc.GetShared(ctx, zipfKey(trace[i&(traceLen-1)]))
			if err != nil {
				misses++
			}
			n += len(v)
		}
		cpu.report(b)
		sinkBytes.Add(int64(n))
		reportMisses(b, int64(misses))
	})
	b.Run("impl=otter", func(b *testing.B) {
		misses, n := 0, 0
		b.ReportAllocs()
		cpu := startCPU()
		for i := 0; i < b.N; i++ {
			v, ok := oc.GetIfPresent(zipfKey(trace[i&(traceLen-1)]))
			if !ok {
				misses++
			}
			n += len(v)
		}
		cpu.report(b)
		sinkBytes.Add(int64(n))
		reportMisses(b, int64(misses))
	})
	b.Run("impl=otter-copy", func(b *testing.B) {
		misses, n := 0, 0
		b.ReportAllocs()
		cpu := startCPU()
		for i := 0; i < b.N; i++ {
			v, ok := oc.GetIfPresent(zipfKey(trace[i&(traceLen-1)]))
			if !ok {
				misses++
			}
			out := make([]byte, len(v))
			copy(out, v)
			n += len(out)
		}
		cpu.report(b)
		sinkBytes.Add(int64(n))
		reportMisses(b, int64(misses))
	})
}

// BenchmarkMemoryGetHot reads the 1024 most popular keys round-robin, so
// that the caches' data stays in the CPU's caches: it shows the cost of the
// code rather than of memory latency.
func BenchmarkMemoryGetHot(b *testing.B) {
	workload()
	mc, oc := preloaded(b)
	ctx := context.Background()
	hot := make([]string, 1024)
	for i := range hot {
		hot[i] = zipfKey(uint32(i))
	}
	run := func(b *testing.B, get func(key string) int) {
		n := 0
		b.ReportAllocs()
		b.ResetTimer()
		cpu := startCPU()
		for i := 0; i < b.N; i++ {
			n += get(hot[i&1023])
		}
		cpu.report(b)
		sinkBytes.Add(int64(n))
	}
	b.Run("impl=cachekit", func(b *testing.B) {
		run(b, func(key string) int {
			v, err := mc.Get(ctx, key)
			if err != nil {
				panic(err)
			}
			return len(v)
		})
	})
	b.Run("impl=cachekit-shared", func(b *testing.B) {
		run(b, func(key string) int {
			v, err := mc.GetShared(ctx, key)
			if err != nil {
				panic(err)
			}
			return len(v)
		})
	})
	b.Run("impl=otter", func(b *testing.B) {
		run(b, func(key string) int {
			v, _ := oc.GetIfPresent(key)
			return len(v)
		})
	})
	b.Run("impl=otter-copy", func(b *testing.B) {
		run(b, func(key string) int {
			v, _ := oc.GetIfPresent(key)
			out := make([]byte, len(v))
			copy(out, v)
			return len(out)
		})
	})
}

// The Set benchmarks write keys drawn from all 1M keys into caches full of
// the 100k most popular ones, so most writes insert and evict.
func BenchmarkMemorySetParallel(b *testing.B) {
	_, full := workload()
	ctx := context.Background()
	parallel := func(b *testing.B, set func(key string)) {
		b.ReportAllocs()
		b.ResetTimer()
		cpu := startCPU()
		b.RunParallel(func(pb *testing.PB) {
			trace := full[traceSeq.Add(1)%traceCount]
			for i := 0; pb.Next(); i++ {
				set(zipfKey(trace[i&(traceLen-1)]))
			}
		})
		cpu.report(b)
	}
	b.Run("impl=cachekit", func(b *testing.B) {
		mc, _ := preloaded(b)
		parallel(b, func(key string) {
			if err := mc.Set(ctx, key, memValue, 0); err != nil {
				panic(err)
			}
		})
	})
	b.Run("impl=otter", func(b *testing.B) {
		_, oc := preloaded(b)
		parallel(b, func(key string) { oc.Set(key, memValue) })
	})
	b.Run("impl=otter-copy", func(b *testing.B) {
		_, oc := preloaded(b)
		parallel(b, func(key string) {
			v := make([]byte, len(memValue))
			copy(v, memValue)
			oc.Set(key, v)
		})
	})
}

func BenchmarkMemorySetSequential(b *testing.B) {
	_, full := workload()
	ctx := context.Background()
	trace := full[0]
	sequential := func(b *testing.B, set func(key string)) {
		b.ReportAllocs()
		b.ResetTimer()
		cpu := startCPU()
		for i := 0; i < b.N; i++ {
			set(zipfKey(trace[i&(traceLen-1)]))
		}
		cpu.report(b)
	}
	b.Run("impl=cachekit", func(b *testing.B) {
		mc, _ := preloaded(b)
		sequential(b, func(key string) {
			if err := mc.Set(ctx, key, memValue, 0); err != nil {
				panic(err)
			}
		})
	})
	b.Run("impl=otter", func(b *testing.B) {
		_, oc := preloaded(b)
		sequential(b, func(key string) { oc.Set(key, memValue) })
	})
	b.Run("impl=otter-copy", func(b *testing.B) {
		_, oc := preloaded(b)
		sequential(b, func(key string) {
			v := make([]byte, len(memValue))
			copy(v, memValue)
			oc.Set(key, v)
		})
	})
}

// BenchmarkMemoryGetPaired is BenchmarkMemoryGetParallel measured for
// ratios on a machine shared with other work: every RunParallel goroutine
// rotates through the Gets it compares in chunks of pairedChunk calls
// along its Zipf trace, timing each chunk, so that a burst of other work
// lands on one chunk rather than on one row. It reports, as medians over
// the rotations of every goroutine, each implementation's ns/op and the
// ratios the issue asks about.
//
// set=nocopy rotates through raw otter and cachekit GetShared, neither of
// which allocates: shared/otter is the backend's cost over its engine.
// set=all adds otter-copy and cachekit Get, which allocate a copy per
// call: get/otter and get/otter-copy. The garbage collection those copies
// cause runs beside every chunk, not only theirs, so set=all understates
// what the copy costs; the cpu-ns/op of BenchmarkMemoryGetParallel's rows
// charges it to the rows that cause it.
//
//	go test -run '^$' -bench 'BenchmarkMemoryGetPaired' -count 5 .
func BenchmarkMemoryGetPaired(b *testing.B) {
	hits, _ := workload()
	mc, oc := preloaded(b)
	ctx := context.Background()
	var misses atomic.Int64
	const (
		otterI = iota
		sharedI
		otterCopyI
		getI
	)
	gets := [...]func(key string) int{
		otterI: func(key string) int {
			v, ok := oc.GetIfPresent(key)
			if !ok {
				misses.Add(1)
			}
			return len(v)
		},
		sharedI: func(key string) int {
			v, err := mc.GetShared(ctx, key)
			if err != nil {
				misses.Add(1)
			}
			return len(v)
		},
		otterCopyI: func(key string) int {
			v, ok := oc.GetIfPresent(key)
			if !ok {
				misses.Add(1)
			}
			out := make([]byte, len(v))
			copy(out, v)
			return len(out)
		},
		getI: func(key string) int {
			v, err := mc.Get(ctx, key)
			if err != nil {
				misses.Add(1)
			}
			return len(v)
		},
	}
	for _, set := range []struct {
		name  string
		impls int // gets[:impls] take part
	}{{"nocopy", 2}, {"all", 4}} {
		b.Run("set="+set.name, func(b *testing.B) {
			var (
				mu     sync.Mutex
				rounds [][4]time.Duration // one per complete rotation of one goroutine
			)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				trace := hits[traceSeq.Add(1)%traceCount]
				var mine [][4]time.Duration
				var cur [4]time.Duration
				n, i, impl, inChunk := 0, 0, 0, 0
				start := time.Now()
				for pb.Next() {
					n += gets[impl](zipfKey(trace[i&(traceLen-1)]))
					i++
					if inChunk++; inChunk == pairedChunk {
						now := time.Now()
						cur[impl] = now.Sub(start)
						start, inChunk = now, 0
						if impl++; impl == set.impls {
							mine = append(mine, cur)
							impl = 0
						}
					}
				}
				sinkBytes.Add(int64(n))
				mu.Lock()
				rounds = append(rounds, mine...)
				mu.Unlock()
			})
			reportMisses(b, misses.Load())
			if len(rounds) == 0 {
				return
			}
			per := func(impl int) float64 {
				xs := make([]float64, len(rounds))
				for j, r := range rounds {
					xs[j] = float64(r[impl]) / pairedChunk
				}
				return median(xs)
			}
			ratio := func(num, den int) float64 {
				xs := make([]float64, len(rounds))
				for j, r := range rounds {
					xs[j] = float64(r[num]) / float64(r[den])
				}
				return median(xs)
			}
			b.ReportMetric(per(otterI), "otter-ns/op")
			b.ReportMetric(per(sharedI), "shared-ns/op")
			b.ReportMetric(ratio(sharedI, otterI), "shared/otter")
			if set.impls == 4 {
				b.ReportMetric(per(otterCopyI), "otter-copy-ns/op")
				b.ReportMetric(per(getI), "get-ns/op")
				b.ReportMetric(ratio(getI, otterI), "get/otter")
				b.ReportMetric(ratio(getI, otterCopyI), "get/otter-copy")
			}
		})
	}
}

// reportMisses fails the benchmark if a Get that should hit missed: the Get
// rows compare hits only.
func reportMisses(b *testing.B, misses int64) {
	if misses > 0 {
		b.Fatalf("%d of %d Gets missed; the Get benchmarks measure hits only", misses, b.N)
	}
}
