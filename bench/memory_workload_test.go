package bench

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The memory benchmarks' workload: keys drawn from a Zipf distribution with
// s=1.01 over 1M keys (rank 0 the most popular), a capacity of 100k entries
// and 100-byte values, as in the issue.
const (
	zipfS        = 1.01
	zipfV        = 1
	zipfKeys     = 1_000_000
	memCapacity  = 100_000
	memValueSize = 100
	// memSlot is the byte budget per entry that makes the memory backend's
	// capacity exactly memCapacity entries: MaxEntries=memCapacity with
	// MaxBytes=memCapacity*memSlot, far more bytes than 100k entries of
	// 100-byte values need, so the bound on entries is the one that binds.
	memSlot = 4096

	traceLen   = 1 << 20 // accesses per trace (a power of two, for masking)
	traceCount = 8       // traces, one per goroutine of RunParallel (round-robin)
)

var (
	workloadOnce sync.Once
	keyData      string     // every key name, back to back
	keyEnds      []uint32   // key rank i is keyData[keyEnds[i-1]:keyEnds[i]]
	hitTraces    [][]uint32 // ranks < memCapacity only: every access is a hit
	fullTraces   [][]uint32 // ranks over all 1M keys
	memValue     = make([]byte, memValueSize)
)

// zipfKey returns the name of the key of the given rank. The names live in
// one string, so that the benchmark's own data is one object the garbage
// collector does not scan, rather than a million: with the names as
// separate strings, the collector's work for the key table alone would be
// charged to every allocating benchmark.
func zipfKey(rank uint32) string {
	start := uint32(0)
	if rank > 0 {
		start = keyEnds[rank-1]
	}
	return keyData[start:keyEnds[rank]]
}

// workload builds the key names and the pre-generated traces, so that the
// random number generator stays out of the timed loops.
func workload() (hits, full [][]uint32) {
	workloadOnce.Do(func() {
		var b strings.Builder
		keyEnds = make([]uint32, zipfKeys)
		for i := range keyEnds {
			b.WriteString("key:")
			b.WriteString(strconv.Itoa(i))
			keyEnds[i] = uint32(b.Len())
		}
		keyData = b.String()
		for i := range memValue {
			memValue[i] = byte(i)
		}
		for t := range traceCount {
			r := rand.New(rand.NewPCG(uint64(t), 0x5eed))
			z := rand.NewZipf(r, zipfS, zipfV, zipfKeys-1)
			hit := make([]uint32, traceLen)
			all := make([]uint32, traceLen)
			for i := range all {
				all[i] = uint32(z.Uint64())
			}
			// The hit trace is the same distribution restricted to the
			// memCapacity most popular keys, which the Get benchmarks
			// preload: the draws of other keys are dropped and redrawn.
			for i := range hit {
				k := z.Uint64()
				for k >= memCapacity {
					k = z.Uint64()
				}
				hit[i] = uint32(k)
			}
			hitTraces = append(hitTraces, hit)
			fullTraces = append(fullTraces, all)
		}
	})
	return hitTraces, fullTraces
}

// hitRatioTrace returns n accesses of the Zipf workload from a fixed seed.
func hitRatioTrace(n int) []uint32 {
	r := rand.New(rand.NewPCG(42, 1))
	z := rand.NewZipf(r, zipfS, zipfV, zipfKeys-1)
	trace := make([]uint32, n)
	for i := range trace {
		trace[i] = uint32(z.Uint64())
	}
	return trace
}

// cpuMeter reports the process's CPU time per op as the metric cpu-ns/op,
// next to the wall time of ns/op. On a machine shared with other work, wall
// time counts the time the benchmark waits for a core; CPU time does not,
// and it includes the garbage collector's work, wherever it runs. Start it
// after the setup; call report after the timed loop.
type cpuMeter struct{ start time.Duration }

func startCPU() cpuMeter { return cpuMeter{processCPU()} }

func (m cpuMeter) report(b *testing.B) {
	if d := processCPU() - m.start; m.start > 0 && b.N > 0 {
		b.ReportMetric(float64(d.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}
