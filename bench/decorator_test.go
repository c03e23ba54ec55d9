package bench

// The decorator: the cost of a hit through decorator.Cached next to
// Typed.Get of the same key, and a stampede on a cold key.
//
//	go test -run '^$' -bench 'BenchmarkDecorator' -benchmem -count 5 .
//
// BenchmarkDecoratorHit rows, for codec=msgpack and codec=json, on the
// memory backend, one goroutine:
//
//	path=typed          Typed.Get of the key Cached uses (computed once).
//	path=cached         the function decorator.Cached returns, with default
//	                    options: it makes the key of the int64 argument (a
//	                    hot argument's key comes from a small cache of recent
//	                    keys, so a hit allocates no more than Typed.Get),
//	                    reads, decodes. The target: at most 10% more
//	                    than path=typed.
//	path=cached-string  the same with a string argument.
//	path=cached-timeout Options.CacheTimeout=100ms: a context.WithTimeout per
//	                    read, which is why CacheTimeout is off by default.
//	path=cached-envelope Options.FailSafeMaxStale set: the envelope format.
//	path=paired         path=typed and path=cached in alternating blocks of
//	                    256 calls, so that load on the machine weighs on both
//	                    alike; reports typed_ns/get, cached_ns/get (means)
//	                    and overhead_%, the median over the pairs of blocks
//	                    of cached's time over typed's, minus one: robust to
//	                    the other processes of a shared machine. ns/op is
//	                    for 512 calls.
//
// BenchmarkDecoratorLocalHit: a hit of the function decorator.Cached
// returns (int64 argument, msgpack, the 5-field decoratorUser), one
// goroutine, with the Typed's local tier (TypedOptions.Local) off and on,
// over the memory backend and Redis (CACHEKIT_BENCH_REDIS_ADDR, else
// CACHEKIT_TEST_REDIS_ADDR; skipped without one):
//
//	backend=memory|redis/format=plain|envelope/local=off|on
//
// format=envelope is Options.FailSafeMaxStale set (the value is stored in
// the decorator's envelope, kept locally with its header). local=on serves
// the hit from process memory: no cache call, no decode.
//
// BenchmarkDecoratorStampede: each op sends callers=N goroutines at one cold
// key of a Cached function whose fn takes 20ms, and reports fn_calls/op (1
// means one call of fn per stampede) and the callers' p50 and p99 latency
// in milliseconds. clients=4 splits the callers over four decorated
// functions with Options.Lease on, each over its own view of the storage
// (four "processes"); set CACHEKIT_BENCH_REDIS_ADDR to run the same on
// Redis.

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
	"github.com/cachekit/cachekit/backend/redis"
	"github.com/cachekit/cachekit/decorator"
	"github.com/cachekit/cachekit/serializer"
)

// decoratorUser is a typical cached row.
type decoratorUser struct {
	ID        int64
	Name      string
	Email     string
	Admin     bool
	CreatedAt time.Time
}

var decoratorValue = decoratorUser{ID: 42, Name: "Ada Lovelace", Email: "ada@example.com", Admin: true,
	CreatedAt: time.Date(2024, 5, 17, 12, 30, 45, 0, time.UTC)}

var sinkUser decoratorUser

func BenchmarkDecoratorHit(b *testing.B) {
	ctx := context.Background()
	for _, codec := range []struct {
		name string
		ser  serializer.Serializer
	}{{"msgpack", serializer.MsgPack{}}, {"json", serializer.JSON{}}} {
		mem := memory.New(nil)
		b.Cleanup(func() { mem.Close() })
		typed := cachekit.NewTyped[decoratorUser](mem, &cachekit.TypedOptions{Serializer: codec.ser})
		load := func(context.Context, int64) (decoratorUser, error) { return decoratorValue, nil }
		loadS := func(context.Context, string) (decoratorUser, error) { return decoratorValue, nil }

		cached := decorator.New(typed, load, &decorator.Options[int64]{Name: "user"})
		cachedS := decorator.Cached(typed, loadS, &decorator.Options[string]{Name: "user"})
		timeout := decorator.Cached(typed, load, &decorator.Options[int64]{Name: "user", CacheTimeout: 100 * time.Millisecond})
		envelope := decorator.Cached(typed, load, &decorator.Options[int64]{Name: "user-env", TTL: time.Hour, FailSafeMaxStale: time.Hour})
		key, _ := cached.Key(42)
		for _, warm := range []func() error{
			func() error { _, err := cached.Call(ctx, 42); return err },
			func() error { _, err := cachedS(ctx, "42"); return err },
			func() error { _, err := envelope(ctx, 42); return err },
		} {
			if err := warm(); err != nil {
				b.Fatal(err)
			}
		}

		paths := []struct {
			name string
			get  func() (decoratorUser, error)
		}{
			{"typed", func() (decoratorUser, error) { return typed.Get(ctx, key) }},
			{"cached", func() (decoratorUser, error) { return cached.Call(ctx, 42) }},
			{"cached-string", func() (decoratorUser, error) { return cachedS(ctx, "42") }},
			{"cached-timeout", func() (decoratorUser, error) { return timeout(ctx, 42) }},
			{"cached-envelope", func() (decoratorUser, error) { return envelope(ctx, 42) }},
		}
		// The two paths in alternating blocks, so that a load on the
		// machine that comes and goes weighs on both alike.
		b.Run(fmt.Sprintf("codec=%s/path=paired", codec.name), func(b *testing.B) {
			const block = 256
			var typedTime, cachedTime time.Duration
			runTyped := func() time.Duration {
				t0 := time.Now()
				for range block {
					sinkUser, _ = typed.Get(ctx, key)
				}
				return time.Since(t0)
			}
			runCached := func() time.Duration {
				t0 := time.Now()
				for range block {
					sinkUser, _ = cached.Call(ctx, 42)
				}
				return time.Since(t0)
			}
			var ratios []float64
			odd := false
			for b.Loop() {
				// Alternate which goes first, so that neither always
				// pays for the other's garbage.
				var tt, ct time.Duration
				if odd = !odd; odd {
					tt = runTyped()
					ct = runCached()
				} else {
					ct = runCached()
					tt = runTyped()
				}
				typedTime += tt
				cachedTime += ct
				ratios = append(ratios, float64(ct)/float64(tt))
			}
			// The median of the pairs' ratios: a pair that another process
			// interrupted is an outlier, which the median ignores.
			slices.Sort(ratios)
			b.ReportMetric(float64(typedTime.Nanoseconds())/float64(b.N*block), "typed_ns/get")
			b.ReportMetric(float64(cachedTime.Nanoseconds())/float64(b.N*block), "cached_ns/get")
			b.ReportMetric(100*(ratios[len(ratios)/2]-1), "overhead_%")
		})
		for _, p := range paths {
			b.Run(fmt.Sprintf("codec=%s/path=%s", codec.name, p.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					v, err := p.get()
					if err != nil {
						b.Fatal(err)
					}
					sinkUser = v
				}
			})
		}
	}
}

func BenchmarkDecoratorLocalHit(b *testing.B) {
	ctx := context.Background()
	backends := []struct {
		name  string
		cache func(b *testing.B) cachekit.Cache
	}{
		{"memory", func(b *testing.B) cachekit.Cache {
			mem := memory.New(nil)
			b.Cleanup(func() { mem.Close() })
			return mem
		}},
		{"redis", func(b *testing.B) cachekit.Cache {
			addr := serverAddr(b, "CACHEKIT_BENCH_REDIS_ADDR")
			client := goredis.NewClient(&goredis.Options{Addr: addr})
			b.Cleanup(func() { client.Close() })
			c := redis.New(client, &redis.Options{Namespace: fmt.Sprintf("bench-declocal-%d", time.Now().UnixNano())})
			b.Cleanup(func() {
				_ = c.Clear(context.Background())
				c.Close()
			})
			return c
		}},
	}
	formats := []struct {
		name string
		opts decorator.Options[int64]
	}{
		{"plain", decorator.Options[int64]{Name: "user", TTL: time.Hour}},
		{"envelope", decorator.Options[int64]{Name: "user-env", TTL: time.Hour, FailSafeMaxStale: time.Hour}},
	}
	for _, be := range backends {
		for _, format := range formats {
			for _, local := range []bool{false, true} {
				onOff := map[bool]string{false: "off", true: "on"}[local]
				b.Run(fmt.Sprintf("backend=%s/format=%s/local=%s", be.name, format.name, onOff), func(b *testing.B) {
					o := &cachekit.TypedOptions{Serializer: serializer.MsgPack{}}
					if local {
						o.Local = &cachekit.LocalOptions{TTL: time.Hour}
					}
					typed := cachekit.NewTyped[decoratorUser](be.cache(b), o)
					b.Cleanup(func() { typed.Close() })
					opts := format.opts
					f := decorator.New(typed, func(context.Context, int64) (decoratorUser, error) { return decoratorValue, nil }, &opts)
					if _, err := f.Call(ctx, 42); err != nil {
						b.Fatal(err)
					}
					f.Wait() // the value is stored (and, with local=on, kept locally)
					b.ReportAllocs()
					for b.Loop() {
						v, err := f.Call(ctx, 42)
						if err != nil {
							b.Fatal(err)
						}
						sinkUser = v
					}
				})
			}
		}
	}
}

func BenchmarkDecoratorStampede(b *testing.B) {
	newMem := func(b *testing.B) func() cachekit.Cache {
		mem := memory.New(nil)
		b.Cleanup(func() { mem.Close() })
		return func() cachekit.Cache { return mem }
	}
	for _, callers := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("backend=memory/clients=1/callers=%d", callers), func(b *testing.B) {
			stampede(b, newMem(b), 1, callers)
		})
		b.Run(fmt.Sprintf("backend=memory/clients=4/callers=%d", callers), func(b *testing.B) {
			stampede(b, newMem(b), 4, callers)
		})
	}
	for _, callers := range []int{100, 1000} {
		b.Run(fmt.Sprintf("backend=redis/clients=4/callers=%d", callers), func(b *testing.B) {
			addr := serverAddr(b, "CACHEKIT_BENCH_REDIS_ADDR")
			ns := fmt.Sprintf("bench-decorator-%d", time.Now().UnixNano())
			stampede(b, func() cachekit.Cache {
				client := goredis.NewClient(&goredis.Options{Addr: addr, PoolSize: 64})
				b.Cleanup(func() { client.Close() })
				c := redis.New(client, &redis.Options{Namespace: ns})
				b.Cleanup(func() { c.Close() })
				return c
			}, 4, callers)
		})
	}
}

// stampede runs b.N stampedes of callers goroutines, spread over clients
// decorated functions (with the lease when there is more than one), each
// on a cold key.
func stampede(b *testing.B, newCache func() cachekit.Cache, clients, callers int) {
	ctx := context.Background()
	var calls atomic.Int64
	fn := func(context.Context, int) (int, error) {
		calls.Add(1)
		time.Sleep(20 * time.Millisecond)
		return 1, nil
	}
	fns := make([]func(context.Context, int) (int, error), clients)
	for i := range fns {
		fns[i] = decorator.Cached(cachekit.NewTyped[int](newCache(), nil), fn,
			&decorator.Options[int]{Name: "stampede", Lease: clients > 1, TTL: time.Minute})
	}
	var lat []time.Duration
	var mu sync.Mutex
	key := 0
	for b.Loop() {
		key++
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				t0 := time.Now()
				if _, err := fns[i%clients](ctx, key); err != nil {
					b.Error(err)
				}
				d := time.Since(t0)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}()
		}
		close(start)
		wg.Wait()
	}
	b.StopTimer()
	slices.Sort(lat)
	ms := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))]) / 1e6 }
	b.ReportMetric(float64(callers), "callers")
	b.ReportMetric(float64(calls.Load())/float64(key), "fn_calls/op")
	b.ReportMetric(ms(0.50), "p50_ms")
	b.ReportMetric(ms(0.99), "p99_ms")
}
