package bench

// Memcached auto-batching side by side, in one run (issue #13):
//
//	CACHEKIT_BENCH_MEMCACHED_ADDR=127.0.0.1:21211 \
//	  go test -run '^$' -bench 'BenchmarkMemcachedAutoBatchInterleaved' -benchtime 4x -count 3 .
//
// 100-byte Gets over 1,000 keys (no namespace) at 1, 8, 64 and 512
// goroutines. Rows, each on a client of its own with the same settings
// (Timeout 10s, 512 idle connections, so that no row dials and drops
// connections at 512 goroutines):
//
//	impl=raw          memcache.Client.Get(key)
//	impl=kit-off      cachekit.Open("memcached://addr?...&auto_pipeline=false"), context.Background()
//	impl=kit-off-ctx  the same with a cancellable context on every call
//	impl=kit-batch    cachekit.Open("memcached://addr?..."): the default, auto_pipeline=true;
//	                  context.Background()
//	impl=kit-batch-ctx  the same with a cancellable context on every call
//
// BenchmarkMemcachedAutoBatchNamespace: the same rows, interleaved, with
// namespace=mcab on the cachekit ones, at 1 and 64 goroutines.
//
// BenchmarkMemcachedAutoBatchInterleaved gives every row, in a rotating
// order, a slice of 300ms per round (b.N rounds) and reports per row ops/s,
// p50/p99 latency of one Get and client CPU per op (this process only), and
// the ratios the goals are stated in. BenchmarkMemcachedAutoBatch runs the
// rows one after the other (ns/op, ops/s, p50, p99).

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachekit/cachekit"
	_ "github.com/cachekit/cachekit/backend/memcached"
)

// mcabIdle is the idle connections each row's client keeps. The rows run
// up to 512 goroutines each, one connection per concurrent call: the server
// needs room for several times that (memcached -c 4096; its default, 1024,
// answers "ERROR Too many open connections").
const mcabIdle = 512

type mcabImpl struct {
	name string
	get  func(key string) error
}

// mcabSetup stores the keys and opens the rows' clients, the cachekit ones
// with namespace ns ("": none).
func mcabSetup(b *testing.B, ns string) ([]string, []mcabImpl) {
	addr := serverAddr(b, "CACHEKIT_BENCH_MEMCACHED_ADDR")
	bg := context.Background()
	raw := memcache.New(addr)
	raw.Timeout = 10 * time.Second
	raw.MaxIdleConns = mcabIdle
	b.Cleanup(func() { raw.Close() })
	run := "mcab-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	value := make([]byte, 100)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	keys := make([]string, serverKeys)
	for i := range keys {
		keys[i] = run + "-" + strconv.Itoa(i)
		if err := raw.Set(&memcache.Item{Key: keys[i], Value: value, Expiration: 3600}); err != nil {
			b.Fatalf("memcached at %s: %v", addr, err)
		}
	}
	open := func(params string) cachekit.Cache {
		c, err := cachekit.Open(bg, "memcached://"+addr+"?timeout=10s&max_idle_conns="+strconv.Itoa(mcabIdle)+"&namespace="+ns+params)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		return c
	}
	def, batch := open("&auto_pipeline=false"), open("")
	if ns != "" {
		run = ns + "-" + run // the cachekit rows store their own keys
		items := make(map[string][]byte, serverKeys)
		for i := range keys {
			keys[i] = run + "-" + strconv.Itoa(i)
			items[keys[i]] = value
			if err := raw.Set(&memcache.Item{Key: keys[i], Value: value, Expiration: 3600}); err != nil {
				b.Fatal(err)
			}
		}
		if err := def.SetMany(bg, items, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	cancellable, cancel := context.WithCancel(bg)
	b.Cleanup(cancel)
	kit := func(name string, c cachekit.Cache, ctx context.Context) mcabImpl {
		return mcabImpl{name, func(key string) error { _, err := c.Get(ctx, key); return err }}
	}
	return keys, []mcabImpl{
		{"raw", func(key string) error { _, err := raw.Get(key); return err }},
		kit("kit-off", def, bg),
		kit("kit-off-ctx", def, cancellable),
		kit("kit-batch", batch, bg),
		kit("kit-batch-ctx", batch, cancellable),
	}
}

func BenchmarkMemcachedAutoBatch(b *testing.B) {
	keys, impls := mcabSetup(b, "")
	for _, g := range apConcurrency {
		for _, impl := range impls {
			b.Run("op=Get/g="+strconv.Itoa(g)+"/impl="+impl.name, func(b *testing.B) {
				apRun(b, g, func(i int) error { return impl.get(keys[i%len(keys)]) })
			})
		}
	}
}

func BenchmarkMemcachedAutoBatchInterleaved(b *testing.B) {
	keys, impls := mcabSetup(b, "")
	// impls: raw, kit-off, kit-off-ctx, kit-batch, kit-batch-ctx
	mcabInterleave(b, apConcurrency, keys, impls, func(b *testing.B, rate []float64) {
		b.ReportMetric(rate[1]/rate[0], "off/raw")
		b.ReportMetric(rate[2]/rate[0], "off-ctx/raw")
		b.ReportMetric(rate[3]/rate[0], "batch/raw")
		b.ReportMetric(rate[4]/rate[0], "batch-ctx/raw")
	})
}

// BenchmarkMemcachedAutoBatchNamespace is the interleaved comparison with
// a namespace on the cachekit rows (namespace=mcab): a namespaced read
// also fetches the namespace generation key, once per Get with
// auto_pipeline=false, once per batch with batching (the default). The raw
// row reads keys of its own, as many, without a generation.
func BenchmarkMemcachedAutoBatchNamespace(b *testing.B) {
	keys, impls := mcabSetup(b, "mcab")
	mcabInterleave(b, []int{1, 64}, keys, impls, func(b *testing.B, rate []float64) {
		b.ReportMetric(rate[1]/rate[0], "off/raw")
		b.ReportMetric(rate[3]/rate[0], "batch/raw")
		b.ReportMetric(rate[4]/rate[0], "batch-ctx/raw")
	})
}

func mcabInterleave(b *testing.B, concurrency []int, keys []string, impls []mcabImpl, ratios func(*testing.B, []float64)) {
	for _, g := range concurrency {
		b.Run("op=Get/g="+strconv.Itoa(g), func(b *testing.B) {
			ops := make([]int64, len(impls))
			busy := make([]time.Duration, len(impls))
			cpu := make([]time.Duration, len(impls))
			lats := make([][]time.Duration, len(impls))
			for round := 0; round < b.N; round++ {
				for j := range impls {
					k := (round + j) % len(impls)
					cpu0 := processCPU()
					n, d, lat, err := apSliceRun(g, func(i int) error { return impls[k].get(keys[i%len(keys)]) })
					cpu[k] += processCPU() - cpu0
					if err != nil {
						b.Fatalf("%s failed at %d goroutines: %v", impls[k].name, g, err)
					}
					ops[k] += n
					busy[k] += d
					lats[k] = append(lats[k], lat...)
				}
			}
			b.StopTimer()
			rate := make([]float64, len(impls))
			for k, impl := range impls {
				rate[k] = float64(ops[k]) / busy[k].Seconds()
				slices.Sort(lats[k])
				b.ReportMetric(rate[k], impl.name+"-ops/s")
				b.ReportMetric(float64(lats[k][len(lats[k])/2]), impl.name+"-p50-ns")
				b.ReportMetric(float64(lats[k][len(lats[k])*99/100]), impl.name+"-p99-ns")
				b.ReportMetric(float64(cpu[k].Nanoseconds())/float64(ops[k]), impl.name+"-cpu-ns/op")
			}
			ratios(b, rate)
		})
	}
}
