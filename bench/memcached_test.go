package bench

// The memcached backend side by side with raw gomemcache, in one run:
//
//	CACHEKIT_BENCH_MEMCACHED_ADDR=127.0.0.1:11211 \
//	  go test -run '^$' -bench 'BenchmarkMemcached' -benchmem -count 3 .
//
// BenchmarkMemcachedTyped: Typed[V].Get and Set (MsgPack) over the backend,
// against raw gomemcache Get/Set plus the same serializer call, for values
// of about 100 bytes and 10 KiB, sequentially and from 64 goroutines. Rows:
//
//	impl=raw          client.Get + MsgPack.Unmarshal; MsgPack.Marshal + client.Set
//	impl=cachekit     Typed over memcached.New(client, nil), context.Background()
//	impl=cachekit-ns  the same with a namespace: reads also fetch the
//	                  generation key in the same round trip
//	impl=cachekit-ctx the same without namespace, with a cancellable context:
//	                  each call runs on a goroutine so that the context is
//	                  honoured (gomemcache takes none)
//
// BenchmarkMemcachedGetMany: 100 keys by GetMany (one multi-key get) against
// 100 sequential Gets and raw GetMulti, reporting the requests sent per
// operation (each is a round trip).
//
// Every row uses the same kind of client: one server, Timeout 10s,
// MaxIdleConns 64, so 64 goroutines never dial.

import (
	"context"
	"net"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memcached"
	"github.com/cachekit/cachekit/serializer"
)

// newMCClient returns a client for the benchmark server; count, if not nil,
// counts the requests the client writes.
func newMCClient(b *testing.B, count *atomic.Int64) *memcache.Client {
	addr := serverAddr(b, "CACHEKIT_BENCH_MEMCACHED_ADDR")
	client := memcache.New(addr)
	client.Timeout = 10 * time.Second // generous: a loaded machine can starve 64 goroutines
	client.MaxIdleConns = 64
	if count != nil {
		var d net.Dialer
		client.DialContext = func(ctx context.Context, network, address string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, address)
			if err != nil {
				return nil, err
			}
			return countingConn{c, count}, nil
		}
	}
	if err := client.Ping(); err != nil {
		b.Fatalf("memcached at %s: %v", addr, err)
	}
	b.Cleanup(func() { client.Close() })
	return client
}

// countingConn counts writes: gomemcache flushes each request in one write.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(p)
}

// mcRun runs op b.N times, on one goroutine or spread over goroutines.
func mcRun(b *testing.B, goroutines int, op func(i int) error) {
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

func BenchmarkMemcachedTyped(b *testing.B) {
	client := newMCClient(b, nil)
	ser := serializer.MsgPack{}
	run := "mcbench-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	ttl := time.Minute
	exp := int32(ttl / time.Second)

	plain := memcached.New(client, nil)
	b.Cleanup(func() { plain.Close() })
	namespaced := memcached.New(client, &memcached.Options{Namespace: run + "ns"})
	b.Cleanup(func() { namespaced.Close() })
	cancellable, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	bg := context.Background()

	for _, size := range serverSizes {
		value := newServerValue(size.size)
		keys := make([]string, serverKeys)
		for i := range keys {
			keys[i] = run + size.name + "-" + strconv.Itoa(i)
		}
		impls := []struct {
			name string
			c    cachekit.Cache
			ctx  context.Context
		}{
			{"cachekit", plain, bg},
			{"cachekit-ns", namespaced, bg},
			{"cachekit-ctx", plain, cancellable},
		}
		// Preload: the raw rows and the plain backend share server keys
		// (plain keys are stored as they are); the namespaced cache has its own.
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
				mcRun(b, conc.goroutines, func(i int) error {
					it, err := client.Get(keys[i%serverKeys])
					if err != nil {
						return err
					}
					var v serverValue
					return ser.Unmarshal(it.Value, &v)
				})
			})
			for _, impl := range impls {
				typed := cachekit.NewTyped[serverValue](impl.c, &cachekit.TypedOptions{Serializer: ser})
				b.Run(prefix+"/impl="+impl.name, func(b *testing.B) {
					mcRun(b, conc.goroutines, func(i int) error {
						_, err := typed.Get(impl.ctx, keys[i%serverKeys])
						return err
					})
				})
			}

			prefix = "op=Set/size=" + size.name + "/g=" + conc.name
			b.Run(prefix+"/impl=raw", func(b *testing.B) {
				mcRun(b, conc.goroutines, func(i int) error {
					data, err := ser.Marshal(value)
					if err != nil {
						return err
					}
					return client.Set(&memcache.Item{Key: keys[i%serverKeys], Value: data, Expiration: exp})
				})
			})
			for _, impl := range impls {
				typed := cachekit.NewTyped[serverValue](impl.c, &cachekit.TypedOptions{Serializer: ser, TTL: ttl})
				b.Run(prefix+"/impl="+impl.name, func(b *testing.B) {
					mcRun(b, conc.goroutines, func(i int) error {
						return typed.Set(impl.ctx, keys[i%serverKeys], value)
					})
				})
			}
		}
	}
}

func BenchmarkMemcachedGetMany(b *testing.B) {
	var requests atomic.Int64
	client := newMCClient(b, &requests)
	run := "mcbench-many-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	bg := context.Background()
	value := make([]byte, 100)
	keys := make([]string, 100)
	for i := range keys {
		keys[i] = run + strconv.Itoa(i)
	}
	plain := memcached.New(client, nil)
	b.Cleanup(func() { plain.Close() })
	namespaced := memcached.New(client, &memcached.Options{Namespace: run + "ns"})
	b.Cleanup(func() { namespaced.Close() })
	for _, c := range []cachekit.Cache{plain, namespaced} {
		items := make(map[string][]byte, len(keys))
		for _, k := range keys {
			items[k] = value
		}
		if err := c.SetMany(bg, items, time.Hour); err != nil {
			b.Fatal(err)
		}
	}

	report := func(b *testing.B, op func() (int, error)) {
		b.ReportAllocs()
		requests.Store(0)
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
		b.ReportMetric(float64(requests.Load())/float64(b.N), "requests/op")
	}
	b.Run("impl=raw-GetMulti", func(b *testing.B) {
		report(b, func() (int, error) {
			m, err := client.GetMulti(keys)
			return len(m), err
		})
	})
	b.Run("impl=cachekit-GetMany", func(b *testing.B) {
		report(b, func() (int, error) {
			m, err := plain.GetMany(bg, keys)
			return len(m), err
		})
	})
	b.Run("impl=cachekit-ns-GetMany", func(b *testing.B) {
		report(b, func() (int, error) {
			m, err := namespaced.GetMany(bg, keys)
			return len(m), err
		})
	})
	b.Run("impl=cachekit-100xGet", func(b *testing.B) {
		report(b, func() (int, error) {
			for _, k := range keys {
				if _, err := plain.Get(bg, k); err != nil {
					return 0, err
				}
			}
			return len(keys), nil
		})
	})
}

// BenchmarkMemcachedPaired measures the same rows as BenchmarkMemcachedTyped
// interleaved: every iteration runs one operation of each implementation,
// in a rotating order, timing each, so load from other processes falls on
// all of them alike. It reports each implementation's mean latency
// (<impl>-ns/op) and its overhead over raw (<impl>-vs-raw-%). With g=64, 64
// goroutines do this at once.
func BenchmarkMemcachedPaired(b *testing.B) {
	client := newMCClient(b, nil)
	ser := serializer.MsgPack{}
	run := "mcpair-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	ttl := time.Minute
	exp := int32(ttl / time.Second)
	plain := memcached.New(client, nil)
	b.Cleanup(func() { plain.Close() })
	namespaced := memcached.New(client, &memcached.Options{Namespace: run + "ns"})
	b.Cleanup(func() { namespaced.Close() })
	cancellable, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	bg := context.Background()

	for _, size := range serverSizes {
		value := newServerValue(size.size)
		keys := make([]string, serverKeys)
		for i := range keys {
			keys[i] = run + size.name + "-" + strconv.Itoa(i)
		}
		for _, k := range keys {
			for _, c := range []cachekit.Cache{plain, namespaced} {
				if err := cachekit.NewTyped[serverValue](c, &cachekit.TypedOptions{Serializer: ser}).Set(bg, k, value, cachekit.WithTTL(time.Hour)); err != nil {
					b.Fatal(err)
				}
			}
		}
		typed := func(c cachekit.Cache) *cachekit.Typed[serverValue] {
			return cachekit.NewTyped[serverValue](c, &cachekit.TypedOptions{Serializer: ser, TTL: ttl})
		}
		tp, tn := typed(plain), typed(namespaced)
		type impl struct {
			name string
			op   func(key string) error
		}
		ops := map[string][]impl{
			"Get": {
				{"raw", func(k string) error {
					it, err := client.Get(k)
					if err != nil {
						return err
					}
					var v serverValue
					return ser.Unmarshal(it.Value, &v)
				}},
				{"cachekit", func(k string) error { _, err := tp.Get(bg, k); return err }},
				{"cachekit-ns", func(k string) error { _, err := tn.Get(bg, k); return err }},
				{"cachekit-ctx", func(k string) error { _, err := tp.Get(cancellable, k); return err }},
			},
			"Set": {
				{"raw", func(k string) error {
					data, err := ser.Marshal(value)
					if err != nil {
						return err
					}
					return client.Set(&memcache.Item{Key: k, Value: data, Expiration: exp})
				}},
				{"cachekit", func(k string) error { return tp.Set(bg, k, value) }},
				{"cachekit-ns", func(k string) error { return tn.Set(bg, k, value) }},
				{"cachekit-ctx", func(k string) error { return tp.Set(cancellable, k, value) }},
			},
		}
		for _, opName := range []string{"Get", "Set"} {
			impls := ops[opName]
			for _, conc := range serverConcurrency {
				b.Run("op="+opName+"/size="+size.name+"/g="+conc.name, func(b *testing.B) {
					var total [4]atomic.Int64
					var count atomic.Int64
					mcRun(b, conc.goroutines, func(i int) error {
						key := keys[i%serverKeys]
						for j := range impls {
							k := (i + j) % len(impls)
							start := time.Now()
							if err := impls[k].op(key); err != nil {
								return err
							}
							total[k].Add(int64(time.Since(start)))
						}
						count.Add(1)
						return nil
					})
					b.StopTimer()
					n := float64(count.Load())
					raw := float64(total[0].Load()) / n
					for k, im := range impls {
						mean := float64(total[k].Load()) / n
						b.ReportMetric(mean, im.name+"-ns/op")
						if k > 0 {
							b.ReportMetric(100*(mean-raw)/raw, im.name+"-vs-raw-%")
						}
					}
				})
			}
		}
	}
}
