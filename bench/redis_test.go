package bench

// The redis backend side by side with raw go-redis, in one run:
//
//	CACHEKIT_BENCH_REDIS_ADDR=127.0.0.1:6379 \
//	  go test -run '^$' -bench 'BenchmarkRedis' -benchmem -count 3 .
//
// BenchmarkRedisTyped: Typed[V].Get and Set (MsgPack) over the backend,
// against raw go-redis Get/Set plus the same serializer call, for values of
// about 100 bytes and 10 KiB, sequentially and from 64 goroutines. Rows:
//
//	impl=raw           client.Get(ctx).Bytes + MsgPack.Unmarshal; MsgPack.Marshal + client.Set
//	impl=cachekit      Typed over redis.New(client, nil): default 1s timeout per call
//	impl=cachekit-ns   the same with a namespace (keys "<ns>:<key>")
//	impl=cachekit-ctx  the same, called with a context that already has a deadline
//	                   (no timer of the cache's own)
//	impl=cachekit-noctx the same over a client without ContextTimeoutEnabled: each
//	                   call runs on a goroutine of its own so the deadline holds
//
// All rows but the last share one client: ContextTimeoutEnabled, PoolSize 128
// (64 goroutines never wait for a connection).
//
// BenchmarkRedisTypedPaired: raw and cachekit (the impl=raw and
// impl=cachekit rows above) interleaved op by op, reporting each one's
// median latency and cachekit's overhead in percent. On a shared machine
// this is the number to trust for "how much does cachekit add": separate
// rows drift with the machine's load by more than the difference.
//
// BenchmarkRedisGetMany: 100 keys by GetMany (one MGET) against 100
// sequential Gets and a raw MGET, reporting round trips per operation
// (counted by a go-redis hook: one per command or pipeline). With
// CACHEKIT_BENCH_REDIS_CLUSTER_ADDRS set, the same on a cluster, where
// GetMany is one pipeline of per-slot MGETs, one round trip per node.

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/redis"
	"github.com/cachekit/cachekit/serializer"
)

// rdTrips counts round trips: one per command, one per pipeline.
type rdTrips struct{ n atomic.Int64 }

func (h *rdTrips) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (h *rdTrips) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h *rdTrips) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// newRDClient returns a client for the benchmark server.
func newRDClient(b *testing.B, ctxTimeouts bool) *goredis.Client {
	addr := serverAddr(b, "CACHEKIT_BENCH_REDIS_ADDR")
	client := goredis.NewClient(&goredis.Options{
		Addr:                  addr,
		PoolSize:              128,
		ContextTimeoutEnabled: ctxTimeouts,
	})
	if err := client.Ping(context.Background()).Err(); err != nil {
		b.Fatalf("redis at %s: %v", addr, err)
	}
	b.Cleanup(func() { client.Close() })
	return client
}

// rdRun runs op b.N times, on one goroutine or spread over goroutines.
func rdRun(b *testing.B, goroutines int, op func(i int) error) {
	b.ReportAllocs()
	b.ResetTimer()
	if goroutines == 1 {
		for i := 0; i < b.N; i++ {
			if err := op(i); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	b.SetParallelism((goroutines + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	var seq atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(1)) * 7919
		for pb.Next() {
			if err := op(i); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

func BenchmarkRedisTyped(b *testing.B) {
	client := newRDClient(b, true)
	plainClient := newRDClient(b, false)
	ser := serializer.MsgPack{}
	run := "rdbench-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	ttl := time.Minute
	bg := context.Background()
	// A context with a deadline far away: the cache adds no timer of its own.
	withDeadline, cancel := context.WithTimeout(bg, time.Hour)
	b.Cleanup(cancel)

	plain := redis.New(client, nil)
	namespaced := redis.New(client, &redis.Options{Namespace: run})
	noCtx := redis.New(plainClient, nil)
	b.Cleanup(func() {
		namespaced.Clear(bg)
		for _, c := range []*redis.Cache{plain, namespaced, noCtx} {
			c.Close()
		}
	})

	for _, size := range serverSizes {
		value := newServerValue(size.size)
		keys := make([]string, serverKeys)
		for i := range keys {
			keys[i] = run + "-" + size.name + "-" + strconv.Itoa(i)
		}
		b.Cleanup(func() { client.Del(bg, keys...) })
		impls := []struct {
			name string
			c    cachekit.Cache
			ctx  context.Context
		}{
			{"cachekit", plain, bg},
			{"cachekit-ns", namespaced, bg},
			{"cachekit-ctx", plain, withDeadline},
			{"cachekit-noctx", noCtx, bg},
		}
		// Preload: raw rows and the un-namespaced caches share server keys.
		for _, k := range keys {
			for _, c := range []cachekit.Cache{plain, namespaced} {
				if err := cachekit.NewTyped[serverValue](c, &cachekit.TypedOptions{Serializer: ser}).Set(bg, k, value, cachekit.WithTTL(time.Hour)); err != nil {
					b.Fatal(err)
				}
			}
		}

		for _, conc := range serverConcurrency {
			prefix := "op=Get/size=" + size.name + "/g=" + conc.name
			b.Run(prefix+"/impl=raw", func(b *testing.B) {
				rdRun(b, conc.goroutines, func(i int) error {
					data, err := client.Get(bg, keys[i%serverKeys]).Bytes()
					if err != nil {
						return err
					}
					var v serverValue
					return ser.Unmarshal(data, &v)
				})
			})
			for _, impl := range impls {
				typed := cachekit.NewTyped[serverValue](impl.c, &cachekit.TypedOptions{Serializer: ser})
				b.Run(prefix+"/impl="+impl.name, func(b *testing.B) {
					rdRun(b, conc.goroutines, func(i int) error {
						_, err := typed.Get(impl.ctx, keys[i%serverKeys])
						return err
					})
				})
			}

			prefix = "op=Set/size=" + size.name + "/g=" + conc.name
			b.Run(prefix+"/impl=raw", func(b *testing.B) {
				rdRun(b, conc.goroutines, func(i int) error {
					data, err := ser.Marshal(value)
					if err != nil {
						return err
					}
					return client.Set(bg, keys[i%serverKeys], data, ttl).Err()
				})
			})
			for _, impl := range impls {
				typed := cachekit.NewTyped[serverValue](impl.c, &cachekit.TypedOptions{Serializer: ser, TTL: ttl})
				b.Run(prefix+"/impl="+impl.name, func(b *testing.B) {
					rdRun(b, conc.goroutines, func(i int) error {
						return typed.Set(impl.ctx, keys[i%serverKeys], value)
					})
				})
			}
		}
	}
}

// BenchmarkRedisTypedPaired measures the same as BenchmarkRedisTyped's raw
// and cachekit rows, paired: every iteration runs the raw operation and the
// cachekit one back to back (alternating which goes first) and times each,
// so that both see the same machine load. It reports the median latency of
// each and the overhead of cachekit's median over raw's, which stays
// meaningful on a busy machine where separate rows drift by more than the
// difference being measured.
func BenchmarkRedisTypedPaired(b *testing.B) {
	client := newRDClient(b, true)
	ser := serializer.MsgPack{}
	run := "rdbench-paired-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	ttl := time.Minute
	bg := context.Background()
	c := redis.New(client, nil)
	b.Cleanup(func() { c.Close() })

	for _, size := range serverSizes {
		value := newServerValue(size.size)
		keys := make([]string, serverKeys)
		for i := range keys {
			keys[i] = run + "-" + size.name + "-" + strconv.Itoa(i)
		}
		b.Cleanup(func() { client.Del(bg, keys...) })
		typed := cachekit.NewTyped[serverValue](c, &cachekit.TypedOptions{Serializer: ser, TTL: ttl})
		for _, k := range keys {
			if err := typed.Set(bg, k, value); err != nil {
				b.Fatal(err)
			}
		}
		ops := []struct {
			name     string
			raw, kit func(i int) error
		}{
			{
				"Get",
				func(i int) error {
					data, err := client.Get(bg, keys[i%serverKeys]).Bytes()
					if err != nil {
						return err
					}
					var v serverValue
					return ser.Unmarshal(data, &v)
				},
				func(i int) error {
					_, err := typed.Get(bg, keys[i%serverKeys])
					return err
				},
			},
			{
				"Set",
				func(i int) error {
					data, err := ser.Marshal(value)
					if err != nil {
						return err
					}
					return client.Set(bg, keys[i%serverKeys], data, ttl).Err()
				},
				func(i int) error { return typed.Set(bg, keys[i%serverKeys], value) },
			},
		}
		for _, conc := range serverConcurrency {
			for _, op := range ops {
				b.Run("op="+op.name+"/size="+size.name+"/g="+conc.name, func(b *testing.B) {
					rdPaired(b, conc.goroutines, op.raw, op.kit)
				})
			}
		}
	}
}

// rdPaired runs raw and kit b.N times each, interleaved, and reports their
// median latencies and the relative overhead of kit.
func rdPaired(b *testing.B, goroutines int, raw, kit func(i int) error) {
	var mu sync.Mutex
	var rawLat, kitLat []time.Duration
	worker := func(start int, next func() bool) {
		var r, k []time.Duration
		for i := start; next(); i++ {
			first, second := raw, kit
			if i%2 == 1 {
				first, second = kit, raw
			}
			t0 := time.Now()
			err1 := first(i)
			t1 := time.Now()
			err2 := second(i)
			t2 := time.Now()
			if err := errors.Join(err1, err2); err != nil {
				b.Error(err)
				return
			}
			if i%2 == 1 {
				r, k = append(r, t2.Sub(t1)), append(k, t1.Sub(t0))
			} else {
				r, k = append(r, t1.Sub(t0)), append(k, t2.Sub(t1))
			}
		}
		mu.Lock()
		rawLat, kitLat = append(rawLat, r...), append(kitLat, k...)
		mu.Unlock()
	}
	b.ResetTimer()
	if goroutines == 1 {
		n := 0
		worker(0, func() bool { n++; return n <= b.N })
	} else {
		b.SetParallelism((goroutines + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		var seq atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			worker(int(seq.Add(1))*7919, pb.Next)
		})
	}
	b.StopTimer()
	if len(rawLat) == 0 {
		return
	}
	median := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2])
	}
	r, k := median(rawLat), median(kitLat)
	b.ReportMetric(r, "raw-p50-ns")
	b.ReportMetric(k, "cachekit-p50-ns")
	b.ReportMetric((k/r-1)*100, "overhead-%")
}

func BenchmarkRedisGetMany(b *testing.B) {
	client := newRDClient(b, true)
	trips := &rdTrips{}
	client.AddHook(trips)
	benchGetMany(b, client, trips, "")
	if addrs := clusterAddrs(); len(addrs) > 0 {
		cl := goredis.NewClusterClient(&goredis.ClusterOptions{
			Addrs:                 addrs,
			ContextTimeoutEnabled: true,
		})
		b.Cleanup(func() { cl.Close() })
		ctrips := &rdTrips{}
		cl.AddHook(ctrips)
		benchGetMany(b, cl, ctrips, "cluster/")
	}
}

func benchGetMany(b *testing.B, client goredis.UniversalClient, trips *rdTrips, prefix string) {
	run := "rdbench-many-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	bg := context.Background()
	value := make([]byte, 100)
	keys := make([]string, 100)
	for i := range keys {
		keys[i] = strconv.Itoa(i)
	}
	c := redis.New(client, &redis.Options{Namespace: run})
	b.Cleanup(func() {
		c.Clear(bg)
		c.Close()
	})
	items := make(map[string][]byte, len(keys))
	wire := make([]string, len(keys))
	for i, k := range keys {
		items[k] = value
		wire[i] = run + ":" + k
	}
	if err := c.SetMany(bg, items, time.Hour); err != nil {
		b.Fatal(err)
	}

	report := func(b *testing.B, op func() (int, error)) {
		b.ReportAllocs()
		trips.n.Store(0)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			n, err := op()
			if err != nil {
				b.Fatal(err)
			}
			if n != len(keys) {
				b.Fatalf("%d hits; want %d", n, len(keys))
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(trips.n.Load())/float64(b.N), "roundtrips/op")
	}
	if prefix == "" { // a raw MGET across slots fails on a cluster
		b.Run(prefix+"impl=raw-MGet", func(b *testing.B) {
			report(b, func() (int, error) {
				vals, err := client.MGet(bg, wire...).Result()
				m := make(map[string][]byte, len(keys))
				for i, v := range vals {
					if s, ok := v.(string); ok {
						m[keys[i]] = []byte(s)
					}
				}
				return len(m), err
			})
		})
	}
	b.Run(prefix+"impl=cachekit-GetMany", func(b *testing.B) {
		report(b, func() (int, error) {
			m, err := c.GetMany(bg, keys)
			return len(m), err
		})
	})
	b.Run(prefix+"impl=cachekit-100xGet", func(b *testing.B) {
		report(b, func() (int, error) {
			for _, k := range keys {
				if _, err := c.Get(bg, k); err != nil {
					return 0, err
				}
			}
			return len(keys), nil
		})
	})
}
