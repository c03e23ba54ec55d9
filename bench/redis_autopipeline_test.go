package bench

// Redis auto-pipelining side by side, in one run (issue #13):
//
//	CACHEKIT_BENCH_REDIS_ADDR=127.0.0.1:6379 \
//	  go test -run '^$' -bench 'BenchmarkRedisAutoPipeline$' -benchtime 2s -count 3 .
//
// 100-byte GETs over 1,000 keys at 1, 8, 64 and 512 goroutines. Rows (each
// on a client of its own, go-redis's default pool size):
//
//	impl=raw-plain      goredis.NewClient(...).Get(ctx, key).Bytes()
//	impl=raw-autopipe   the same client's AutoPipeline() (v9.22, blocking face, defaults)
//	impl=kit-default    cachekit.Open("redis://addr/0"): cachekit's defaults
//	impl=kit-autopipe   cachekit.Open("redis://addr/0?auto_pipeline=true")
//
// Besides ns/op each row reports ops/s and the p50 and p99 latency of one
// operation (every operation is timed; the timer costs the same in every
// row). The rows of one goroutine count run back to back, so they see about
// the same machine load.
//
// BenchmarkRedisAutoPipelineSet: the same four rows for 100-byte SETs (TTL
// 1h), since writes take the cache's write path (never resent, the value
// copied before it is queued).
//
// BenchmarkRedisAutoPipelineInterleaved runs the four rows in turns of
// 300 ms, and BenchmarkRedisAutoPipelinePaired measures the ratio
// (kit-autopipe / raw-autopipe at 64 and 512 goroutines) from alternating
// 100 ms chunks of the two: the figure to trust on a busy machine.

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
	_ "github.com/cachekit/cachekit/backend/redis"
)

var apConcurrency = []int{1, 8, 64, 512}

// apImpl is one row: do runs the operation on key i.
type apImpl struct {
	name string
	get  func(ctx context.Context, key string) error
	set  func(ctx context.Context, key string, v []byte) error
}

// apImpls opens the four clients of the comparison on addr.
func apImpls(b *testing.B, addr string) []apImpl {
	bg := context.Background()
	plain := goredis.NewClient(&goredis.Options{Addr: addr})
	b.Cleanup(func() { plain.Close() })
	apClient := goredis.NewClient(&goredis.Options{Addr: addr})
	b.Cleanup(func() { apClient.Close() })
	ap, err := apClient.AutoPipeline()
	if err != nil {
		b.Fatal(err)
	}
	kit, err := cachekit.Open(bg, "redis://"+addr+"/0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { kit.Close() })
	kitAP, err := cachekit.Open(bg, "redis://"+addr+"/0?auto_pipeline=true")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { kitAP.Close() })
	for _, c := range []goredis.UniversalClient{plain, apClient} {
		if err := c.Ping(bg).Err(); err != nil {
			b.Fatalf("redis at %s: %v", addr, err)
		}
	}
	kitRow := func(name string, c cachekit.Cache) apImpl {
		return apImpl{
			name: name,
			get:  func(ctx context.Context, key string) error { _, err := c.Get(ctx, key); return err },
			set:  func(ctx context.Context, key string, v []byte) error { return c.Set(ctx, key, v, time.Hour) },
		}
	}
	rawRow := func(name string, c goredis.Cmdable) apImpl {
		return apImpl{
			name: name,
			get:  func(ctx context.Context, key string) error { _, err := c.Get(ctx, key).Bytes(); return err },
			set:  func(ctx context.Context, key string, v []byte) error { return c.Set(ctx, key, v, time.Hour).Err() },
		}
	}
	return []apImpl{
		rawRow("raw-plain", plain),
		rawRow("raw-autopipe", ap),
		kitRow("kit-default", kit),
		kitRow("kit-autopipe", kitAP),
	}
}

// apKeys stores 1,000 keys of 100 bytes for this run and returns them.
func apKeys(b *testing.B, addr string) ([]string, []byte) {
	bg := context.Background()
	admin := goredis.NewClient(&goredis.Options{Addr: addr})
	b.Cleanup(func() { admin.Close() })
	run := "apbench-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	value := make([]byte, 100)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	keys := make([]string, serverKeys)
	pipe := admin.Pipeline()
	for i := range keys {
		keys[i] = run + "-" + strconv.Itoa(i)
		pipe.Set(bg, keys[i], value, time.Hour)
	}
	if _, err := pipe.Exec(bg); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { admin.Del(bg, keys...) })
	return keys, value
}

// apRun runs op b.N times from goroutines goroutines, timing each call, and
// reports ops/s, p50 and p99.
func apRun(b *testing.B, goroutines int, op func(i int) error) {
	var mu sync.Mutex
	var all []time.Duration
	worker := func(start int, next func() bool) {
		lat := make([]time.Duration, 0, 1024)
		for i := start; next(); i++ {
			t0 := time.Now()
			if err := op(i); err != nil {
				b.Error(err)
				return
			}
			lat = append(lat, time.Since(t0))
		}
		mu.Lock()
		all = append(all, lat...)
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
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	b.ReportMetric(float64(all[len(all)/2]), "p50-ns")
	b.ReportMetric(float64(all[len(all)*99/100]), "p99-ns")
}

func BenchmarkRedisAutoPipeline(b *testing.B) {
	addr := serverAddr(b, "CACHEKIT_BENCH_REDIS_ADDR")
	keys, _ := apKeys(b, addr)
	impls := apImpls(b, addr)
	bg := context.Background()
	for _, g := range apConcurrency {
		for _, impl := range impls {
			b.Run("op=Get/g="+strconv.Itoa(g)+"/impl="+impl.name, func(b *testing.B) {
				apRun(b, g, func(i int) error { return impl.get(bg, keys[i%len(keys)]) })
			})
		}
	}
}

func BenchmarkRedisAutoPipelineSet(b *testing.B) {
	addr := serverAddr(b, "CACHEKIT_BENCH_REDIS_ADDR")
	keys, value := apKeys(b, addr)
	impls := apImpls(b, addr)
	bg := context.Background()
	for _, g := range apConcurrency {
		for _, impl := range impls {
			b.Run("op=Set/g="+strconv.Itoa(g)+"/impl="+impl.name, func(b *testing.B) {
				apRun(b, g, func(i int) error { return impl.set(bg, keys[i%len(keys)], value) })
			})
		}
	}
}

// BenchmarkRedisAutoPipelineInterleaved is the same comparison with the
// four rows interleaved in time: each iteration (b.N, set it with
// -benchtime Nx) gives every row, in a rotating order, a slice of
// apSlice during which g goroutines run Gets. On a shared machine whose
// load drifts by more than the differences measured, this is the run to
// trust for ratios. It reports, per row, ops/s and p50/p99 latency over all
// its slices, the CPU time this process spent per operation (client side
// only: the server's is not counted; less sensitive to the machine's other
// load than throughput), and the ratios the goals are stated in.
func BenchmarkRedisAutoPipelineInterleaved(b *testing.B) {
	addr := serverAddr(b, "CACHEKIT_BENCH_REDIS_ADDR")
	keys, _ := apKeys(b, addr)
	impls := apImpls(b, addr)
	bg := context.Background()
	for _, g := range apConcurrency {
		b.Run("op=Get/g="+strconv.Itoa(g), func(b *testing.B) {
			ops := make([]int64, len(impls))
			busy := make([]time.Duration, len(impls))
			cpu := make([]time.Duration, len(impls))
			lats := make([][]time.Duration, len(impls))
			for round := 0; round < b.N; round++ {
				for j := range impls {
					k := (round + j) % len(impls)
					cpu0 := processCPU()
					n, d, lat, err := apSliceRun(g, func(i int) error { return impls[k].get(bg, keys[i%len(keys)]) })
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
			// impls: raw-plain, raw-autopipe, kit-default, kit-autopipe
			b.ReportMetric(rate[2]/rate[0], "default/plain")
			b.ReportMetric(rate[3]/rate[0], "autopipe/plain")
			b.ReportMetric(rate[3]/rate[1], "autopipe/raw-autopipe")
		})
	}
}

// apSlice is how long one row runs in each round of the interleaved
// benchmark.
const apSlice = 300 * time.Millisecond

// apSliceRun runs op from g goroutines for apSlice and returns how many
// operations completed, the time taken and their latencies (n < 0: an
// operation failed).
func apSliceRun(g int, op func(i int) error) (int64, time.Duration, []time.Duration, error) {
	var (
		mu       sync.Mutex
		all      []time.Duration
		n        atomic.Int64
		firstErr error
		wg       sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(apSlice)
	for w := 0; w < g; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 256)
			for i := w * 7919; ; i++ {
				t0 := time.Now()
				if !t0.Before(end) {
					break
				}
				if err := op(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					break
				}
				lat = append(lat, time.Since(t0))
			}
			n.Add(int64(len(lat)))
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return -1, 0, nil, firstErr
	}
	return n.Load(), time.Since(start), all, nil
}

// BenchmarkRedisAutoPipelinePaired measures the ratio the goal is
// stated in, cachekit with auto_pipeline=true against raw go-redis
// AutoPipeline() (the kit-autopipe and raw-autopipe rows above), in a way a
// busy machine does not skew: at 64 and 512 goroutines, chunks of
// apPairChunk of the two alternate (which goes first alternates too), on
// the same keys from the same goroutines, and each iteration (set the
// count with -benchtime Nx) is one pair of chunks. A burst of other work on
// the machine then lands on one chunk, and shows in one pair's ratio, not
// in one row:
//
//	CACHEKIT_BENCH_REDIS_ADDR=127.0.0.1:6379 \
//	  go test -run '^$' -bench 'BenchmarkRedisAutoPipelinePaired' -benchtime 30x -count 3 .
//
// It reports the medians over the chunks of each side's ops/s and client
// CPU time per operation (this process's, the garbage collector's
// included), ratio, the median of the pairs' throughput ratios
// (kit / raw: the goal is >= 0.9), with its quartiles ratio-q1 and
// ratio-q3, and cpu-ratio, the median of the pairs' ratios of CPU per
// operation (kit / raw: above 1 when cachekit costs more per call).
func BenchmarkRedisAutoPipelinePaired(b *testing.B) {
	addr := serverAddr(b, "CACHEKIT_BENCH_REDIS_ADDR")
	keys, _ := apKeys(b, addr)
	impls := apImpls(b, addr)
	bg := context.Background()
	// impls: raw-plain, raw-autopipe, kit-default, kit-autopipe
	raw, kit := impls[1], impls[3]
	for _, g := range []int{64, 512} {
		b.Run("op=Get/g="+strconv.Itoa(g), func(b *testing.B) {
			w := startApWorkers(g)
			defer w.stop()
			getRaw := func(i int) error { return raw.get(bg, keys[i%len(keys)]) }
			getKit := func(i int) error { return kit.get(bg, keys[i%len(keys)]) }
			// One pair of chunks each to warm both paths up (connections
			// dialled, the cache's route in piped mode), not counted.
			for _, op := range []func(int) error{getRaw, getKit} {
				if _, _, _, err := w.chunk(op, apPairChunk); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			var rawRate, kitRate, rawCPU, kitCPU, ratios, cpuRatios []float64
			for i := 0; i < b.N; i++ {
				var r, k apChunkResult
				var err error
				if i%2 == 0 {
					if r, err = w.measure(getRaw); err == nil {
						k, err = w.measure(getKit)
					}
				} else {
					if k, err = w.measure(getKit); err == nil {
						r, err = w.measure(getRaw)
					}
				}
				if err != nil {
					b.Fatalf("at %d goroutines: %v", g, err)
				}
				rawRate, kitRate = append(rawRate, r.rate), append(kitRate, k.rate)
				rawCPU, kitCPU = append(rawCPU, r.cpuPerOp), append(kitCPU, k.cpuPerOp)
				ratios = append(ratios, k.rate/r.rate)
				cpuRatios = append(cpuRatios, k.cpuPerOp/r.cpuPerOp)
			}
			b.StopTimer()
			b.ReportMetric(quantile(rawRate, 0.5), "raw-autopipe-ops/s")
			b.ReportMetric(quantile(kitRate, 0.5), "kit-autopipe-ops/s")
			b.ReportMetric(quantile(rawCPU, 0.5), "raw-autopipe-cpu-ns/op")
			b.ReportMetric(quantile(kitCPU, 0.5), "kit-autopipe-cpu-ns/op")
			b.ReportMetric(quantile(ratios, 0.5), "ratio")
			b.ReportMetric(quantile(ratios, 0.25), "ratio-q1")
			b.ReportMetric(quantile(ratios, 0.75), "ratio-q3")
			b.ReportMetric(quantile(cpuRatios, 0.5), "cpu-ratio")
		})
	}
}

// apPairChunk is how long one side runs in each chunk of
// BenchmarkRedisAutoPipelinePaired: long enough for a few hundred batches
// at 512 goroutines, short enough that the machine's load changes little
// between the two chunks of a pair.
const apPairChunk = 100 * time.Millisecond

// apWorkers is a fixed set of goroutines that run chunks of operations
// together: the same goroutines (and stacks) for both sides of a pair.
type apWorkers struct {
	work []chan apWork
	wg   sync.WaitGroup
}

type apWork struct {
	op   func(i int) error
	end  time.Time
	done *apChunkDone
}

// apChunkDone collects the workers' results of one chunk.
type apChunkDone struct {
	wg  sync.WaitGroup
	n   atomic.Int64
	mu  sync.Mutex
	err error
}

type apChunkResult struct {
	rate     float64 // operations per second
	cpuPerOp float64 // this process's CPU time per operation, ns
}

func startApWorkers(g int) *apWorkers {
	w := &apWorkers{work: make([]chan apWork, g)}
	for j := range w.work {
		ch := make(chan apWork, 1)
		w.work[j] = ch
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			i := j * 7919
			for wk := range ch {
				n := int64(0)
				for time.Now().Before(wk.end) {
					if err := wk.op(i); err != nil {
						wk.done.mu.Lock()
						if wk.done.err == nil {
							wk.done.err = err
						}
						wk.done.mu.Unlock()
						break
					}
					i++
					n++
				}
				wk.done.n.Add(n)
				wk.done.wg.Done()
			}
		}()
	}
	return w
}

// chunk runs op on every worker for d and returns how many operations
// completed, the time taken (until the last worker's last operation
// returned) and this process's CPU time meanwhile.
func (w *apWorkers) chunk(op func(i int) error, d time.Duration) (int64, time.Duration, time.Duration, error) {
	done := &apChunkDone{}
	done.wg.Add(len(w.work))
	cpu0 := processCPU()
	start := time.Now()
	end := start.Add(d)
	for _, ch := range w.work {
		ch <- apWork{op: op, end: end, done: done}
	}
	done.wg.Wait()
	elapsed := time.Since(start)
	cpu := processCPU() - cpu0
	return done.n.Load(), elapsed, cpu, done.err
}

// measure runs one chunk of op (apPairChunk) and returns its throughput and
// CPU time per operation.
func (w *apWorkers) measure(op func(i int) error) (apChunkResult, error) {
	n, elapsed, cpu, err := w.chunk(op, apPairChunk)
	if err != nil {
		return apChunkResult{}, err
	}
	if n == 0 {
		return apChunkResult{}, errors.New("no operation completed in a chunk")
	}
	return apChunkResult{
		rate:     float64(n) / elapsed.Seconds(),
		cpuPerOp: float64(cpu.Nanoseconds()) / float64(n),
	}, nil
}

func (w *apWorkers) stop() {
	for _, ch := range w.work {
		close(ch)
	}
	w.wg.Wait()
}

// quantile returns the q-quantile of xs (nearest rank; 0 when empty).
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	xs = slices.Clone(xs)
	slices.Sort(xs)
	return xs[min(len(xs)-1, int(q*float64(len(xs))))]
}
