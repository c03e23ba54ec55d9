package memory_test

import (
	"runtime"
	"strconv"
	"testing"

	"github.com/cachekit/cachekit/backend/memory"
)

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestHeapWithinMaxBytes fills caches with values of several sizes, far
// past MaxBytes, and measures the heap they hold after a GC: it must stay
// within MaxBytes + 10% (plus a constant for the engine's fixed structures),
// and, as the bound is meant to be used, above half of it.
func TestHeapWithinMaxBytes(t *testing.T) {
	if testing.Short() {
		t.Skip("fills caches of 16 MiB")
	}
	const maxBytes = 16 << 20
	const slack = 512 << 10 // the engine's fixed structures
	for _, size := range []int{10, 100, 1000, 4000, 32769, 100000, 1 << 20} {
		value := make([]byte, size)
		before := heapAlloc()
		c := memory.New(&memory.Options{MaxBytes: maxBytes, MaxValueSize: maxBytes})
		n := 3 * maxBytes / (size + 100)
		for i := range n {
			mustSet(t, c, "key:"+strconv.Itoa(i), value, 0)
		}
		memory.WeightedSize(c) // let pending evictions run
		held := int64(heapAlloc()) - int64(before)
		entries := memory.EntryCount(c)
		ratio := float64(held) / maxBytes
		t.Logf("%7d-byte values: %5d entries hold %8d bytes, %.3f x MaxBytes (weight %d)",
			size, entries, held, ratio, memory.WeightedSize(c))
		if held > maxBytes*11/10+slack {
			t.Errorf("%d-byte values: the cache holds %d bytes of heap, %.2f x MaxBytes %d; want at most 1.10 x",
				size, held, ratio, maxBytes)
		}
		if held < maxBytes/2 {
			t.Errorf("%d-byte values: the cache holds %d bytes of heap, %.2f x MaxBytes %d; want it used",
				size, held, ratio, maxBytes)
		}
		c.Close()
		runtime.KeepAlive(c)
	}
}
