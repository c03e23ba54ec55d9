package bench

// The local tier (issue #9, its Performance section), side by side in one
// run, for the ten-field typedRecord encoded with msgpack:
//
//	cd bench && source /tmp/servers.env && GOWORK=off go test -run '^$' -bench 'BenchmarkLocalTier' -benchmem -count 3 .
//
// BenchmarkLocalTierGet rows, each at conc=1 (one goroutine) and
// conc=parallel (b.RunParallel, GOMAXPROCS goroutines):
//
//	path=local-hit         Typed.Get with a Local tier (and a Redis pub/sub
//	                       Backplane) over Redis, the key in the local tier:
//	                       no round trip, no decode.
//	path=csc-hit+decode    go-redis v9.22's client-side cache (RESP3 CLIENT
//	                       TRACKING, ClientSideCacheConfig) serving GET from
//	                       process memory, plus the msgpack.Unmarshal the
//	                       application still has to do.
//	path=typed-memory      Typed.Get over the memory backend, no local tier:
//	                       a copy out of the memory backend and a decode.
//	path=typed-redis       Typed.Get over Redis, no local tier: a round trip
//	                       and a decode.
//
// The targets: local-hit <= 200 ns and 0 allocs, >= 5x faster than
// csc-hit+decode, >= 3x faster than typed-memory. Every row also reports
// cpu-ns/op, the process's CPU time (all threads, GC included) per
// operation: on a machine shared with other work, ns/op (wall time) grows
// with the load, CPU time much less.
//
// BenchmarkLocalTierWrite: Typed.Set over Redis with no local tier and no
// backplane, with a local tier alone, and with a local tier and a Redis
// pub/sub backplane; publishes/op counts the messages a subscriber on the
// channel received, per Set (the issue: at most one extra publish).
//
// BenchmarkLocalTierEntryBytes: the heap a local tier holding 100,000
// typedRecord values costs per entry (B/entry), measured by
// runtime.MemStats.HeapAlloc before and after reading them into the tier.

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
	"github.com/cachekit/cachekit/backend/redis"
	"github.com/cachekit/cachekit/serializer"
)

// localNamespace returns a namespace no other run uses.
func localNamespace(what string) string {
	return fmt.Sprintf("bench-local-%s-%d", what, time.Now().UnixNano())
}

// localRedis opens, for one benchmark, a go-redis client on the Redis
// server, a cache over it in a namespace of its own (cleared at the end),
// and a pub/sub backplane on a channel named after the namespace; all are
// closed when b ends.
func localRedis(b *testing.B, what string) (addr string, client *goredis.Client, ns string, rc cachekit.Cache, bp cachekit.Backplane) {
	b.Helper()
	addr = serverAddr(b, "CACHEKIT_BENCH_REDIS_ADDR")
	client = goredis.NewClient(&goredis.Options{Addr: addr, PoolSize: 64, ContextTimeoutEnabled: true})
	b.Cleanup(func() { client.Close() })
	ns = localNamespace(what)
	rc = redis.New(client, &redis.Options{Namespace: ns})
	b.Cleanup(func() {
		_ = rc.Clear(context.Background())
		rc.Close()
	})
	bp, err := cachekit.OpenBackplane(context.Background(), "redis://"+addr+"/0?channel="+ns)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { bp.Close() })
	return addr, client, ns, rc, bp
}

// localTyped returns a Typed of typedRecord (msgpack) over c with opts'
// Local and Backplane, closed when b ends.
func localTyped(b *testing.B, c cachekit.Cache, local *cachekit.LocalOptions, bp cachekit.Backplane) *cachekit.Typed[typedRecord] {
	b.Helper()
	typed := cachekit.NewTyped[typedRecord](c, &cachekit.TypedOptions{
		Serializer: serializer.MsgPack{}, Local: local, Backplane: bp,
		OnError: func(_ context.Context, err error) { b.Errorf("cache: %v", err) },
	})
	b.Cleanup(func() { typed.Close() })
	return typed
}

// localRun runs get at conc=1 and conc=parallel.
func localRun(b *testing.B, name string, get func() (typedRecord, error)) {
	b.Run(name+"/conc=1", func(b *testing.B) {
		b.ReportAllocs()
		cpu := startCPU()
		for b.Loop() {
			v, err := get()
			if err != nil {
				b.Fatal(err)
			}
			sinkRecord = v
		}
		cpu.report(b)
		if !equalRecords(sinkRecord, typedValue) {
			b.Fatalf("read %+v", sinkRecord)
		}
	})
	b.Run(name+"/conc=parallel", func(b *testing.B) {
		b.ReportAllocs()
		cpu := startCPU()
		defer cpu.report(b)
		b.RunParallel(func(pb *testing.PB) {
			var last typedRecord
			n := 0
			for pb.Next() {
				v, err := get()
				if err != nil {
					b.Error(err)
					return
				}
				last = v
				n++
			}
			if n > 0 && !equalRecords(last, typedValue) {
				b.Errorf("read %+v", last)
			}
		})
	})
}

func BenchmarkLocalTierGet(b *testing.B) {
	ctx := context.Background()
	addr, client, ns, rc, bp := localRedis(b, "get")

	// path=local-hit.
	local := localTyped(b, rc, &cachekit.LocalOptions{TTL: time.Hour}, bp)
	if err := local.Set(ctx, "record", typedValue); err != nil {
		b.Fatal(err)
	}
	localRun(b, "path=local-hit", func() (typedRecord, error) { return local.Get(ctx, "record") })

	// path=csc-hit+decode: the same msgpack bytes under a plain key, read
	// through go-redis's client-side cache.
	cscKey := ns + ":csc-record"
	raw, err := msgpack.Marshal(typedValue)
	if err != nil {
		b.Fatal(err)
	}
	if err := client.Set(ctx, cscKey, raw, time.Hour).Err(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Del(context.Background(), cscKey) })
	csc := goredis.NewClient(&goredis.Options{Addr: addr, PoolSize: 64, Protocol: 3,
		ClientSideCacheConfig: &goredis.ClientSideCacheConfig{MaxEntries: 1024}})
	b.Cleanup(func() { csc.Close() })
	if _, err := csc.Get(ctx, cscKey).Bytes(); err != nil { // fills the client-side cache
		b.Fatal(err)
	}
	before := csc.CSCStats()
	var cscGets atomic.Int64
	localRun(b, "path=csc-hit+decode", func() (typedRecord, error) {
		cscGets.Add(1)
		var v typedRecord
		data, err := csc.Get(ctx, cscKey).Bytes()
		if err == nil {
			err = msgpack.Unmarshal(data, &v)
		}
		return v, err
	})
	// The rows above measured hits, not round trips.
	if gets, hits := cscGets.Load(), int64(csc.CSCStats().Hits-before.Hits); gets > 0 && hits < gets*99/100 {
		b.Fatalf("go-redis client-side cache: %d hits for %d Gets; the csc rows measured round trips", hits, gets)
	}

	// path=typed-memory.
	mem := memory.New(nil)
	b.Cleanup(func() { mem.Close() })
	memTyped := localTyped(b, mem, nil, nil)
	if err := memTyped.Set(ctx, "record", typedValue); err != nil {
		b.Fatal(err)
	}
	localRun(b, "path=typed-memory", func() (typedRecord, error) { return memTyped.Get(ctx, "record") })

	// path=typed-redis.
	plain := localTyped(b, rc, nil, nil)
	localRun(b, "path=typed-redis", func() (typedRecord, error) { return plain.Get(ctx, "record") })
}

func BenchmarkLocalTierWrite(b *testing.B) {
	ctx := context.Background()
	_, _, _, rc, bp := localRedis(b, "write")
	// A subscriber on the channel counts the publishes.
	var published atomic.Int64
	stop := bp.Subscribe(func(cachekit.Invalidation) { published.Add(1) }, func(error) {})
	b.Cleanup(stop)

	for _, tc := range []struct {
		name  string
		local *cachekit.LocalOptions
		bp    cachekit.Backplane
	}{
		{"backplane=none/local=none", nil, nil},
		{"backplane=none/local=on", &cachekit.LocalOptions{TTL: time.Hour}, nil},
		{"backplane=redis-pubsub/local=on", &cachekit.LocalOptions{TTL: time.Hour}, bp},
	} {
		typed := localTyped(b, rc, tc.local, tc.bp)
		b.Run(tc.name+"/conc=1", func(b *testing.B) {
			b.ReportAllocs()
			start := published.Load()
			cpu := startCPU()
			n := 0
			for b.Loop() {
				if err := typed.Set(ctx, "w", typedValue); err != nil {
					b.Fatal(err)
				}
				n++
			}
			cpu.report(b)
			b.StopTimer()
			b.ReportMetric(float64(localDelivered(&published, start, tc.bp != nil, n))/float64(n), "publishes/op")
		})
		b.Run(tc.name+"/conc=parallel", func(b *testing.B) {
			b.ReportAllocs()
			start := published.Load()
			cpu := startCPU()
			var n atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if err := typed.Set(ctx, "w"+strconv.Itoa(i%64), typedValue); err != nil {
						b.Error(err)
						return
					}
					i++
				}
				n.Add(int64(i))
			})
			cpu.report(b)
			b.StopTimer()
			b.ReportMetric(float64(localDelivered(&published, start, tc.bp != nil, int(n.Load())))/float64(n.Load()), "publishes/op")
		})
	}
}

// localDelivered waits (a little) for the subscriber to have counted the
// messages of n writes, and returns how many it counted since start.
func localDelivered(published *atomic.Int64, start int64, expect bool, n int) int64 {
	if expect {
		deadline := time.Now().Add(10 * time.Second)
		for published.Load()-start < int64(n) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	} else {
		time.Sleep(50 * time.Millisecond) // nothing should arrive
	}
	return published.Load() - start
}

// BenchmarkLocalTierEntryBytes: heap per local entry of typedRecord. Each
// iteration reads 100,000 distinct keys through a Typed with a local tier
// over the memory backend (each a local miss that keeps the decoded value),
// and measures HeapAlloc after a GC before and after, with the memory
// backend's own bytes already counted in "before".
func BenchmarkLocalTierEntryBytes(b *testing.B) {
	const entries = 100_000
	ctx := context.Background()
	mem := memory.New(&memory.Options{MaxBytes: 1 << 30})
	b.Cleanup(func() { mem.Close() })
	keys := make([]string, entries)
	for i := range keys {
		keys[i] = "record-" + strconv.Itoa(i)
	}
	filler := cachekit.NewTyped[typedRecord](mem, &cachekit.TypedOptions{Serializer: serializer.MsgPack{}})
	for _, k := range keys {
		if err := filler.Set(ctx, k, typedValue); err != nil {
			b.Fatal(err)
		}
	}
	var perEntry float64
	for b.Loop() {
		b.StopTimer()
		heap := func() uint64 {
			runtime.GC()
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			return ms.HeapAlloc
		}
		h0 := heap()
		var localHits atomic.Int64
		hooked := cachekit.WithHooks(mem, cachekit.EventHookFunc(func(_ context.Context, ev cachekit.Event) {
			if ev.Kind == cachekit.EventLocalHit {
				localHits.Add(1)
			}
		}))
		typed := cachekit.NewTyped[typedRecord](hooked, &cachekit.TypedOptions{
			Serializer: serializer.MsgPack{},
			Local:      &cachekit.LocalOptions{MaxEntries: 2 * entries, TTL: time.Hour},
		})
		b.StartTimer()
		for _, k := range keys {
			if _, err := typed.Get(ctx, k); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		h1 := heap()
		// Every entry is held: a second read of each is a local hit.
		if n := localHits.Load(); n != 0 {
			b.Fatalf("%d local hits while filling", n)
		}
		for _, k := range keys {
			if v, err := typed.Get(ctx, k); err != nil || !equalRecords(v, typedValue) {
				b.Fatalf("Get(%s) = %+v, %v", k, v, err)
			}
		}
		if n := localHits.Load(); n != entries {
			b.Fatalf("%d of %d entries were local hits: the tier did not hold them all", n, entries)
		}
		perEntry = float64(int64(h1)-int64(h0)) / entries
		runtime.KeepAlive(typed)
		typed.Close()
		b.StartTimer()
	}
	b.ReportMetric(perEntry, "B/entry")
}
