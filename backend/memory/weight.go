package memory

// The weight of an entry is what the Go heap holds for it: the allocations
// of its key and value, each rounded up as the allocator rounds it, plus
// EntryOverhead for the engine's node and its share of the hash table.
// Counting the bytes as given undercounts: a 32,769-byte value occupies a
// 40,960-byte span (five 8 KiB pages), so a cache of such values held 1.25
// times MaxBytes.

// sizeClasses are the Go allocator's size classes for small objects
// (runtime's class_to_size, the same since Go 1.21 on 64-bit platforms);
// TestAllocSizeMatchesRuntime checks them against the running runtime.
var sizeClasses = [...]uint16{
	8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256,
	288, 320, 352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280,
	1408, 1536, 1792, 2048, 2304, 2688, 3072, 3200, 3456, 4096, 4864, 5376, 6144, 6528,
	6784, 6912, 8192, 9472, 9728, 10240, 10880, 12288, 13568, 14336, 16384, 18432, 19072,
	20480, 21760, 24576, 27264, 28672, 32768,
}

const (
	maxSmallSize = 32768 // larger objects get whole pages
	pageSize     = 8192
	smallStep    = 8   // sizes up to 1024 come in steps of 8
	largeStep    = 128 // and then in steps of 128
)

// classBySize8[(n+7)/8] for n <= 1024, and classBySize128[(n-1024+127)/128]
// for 1024 < n <= 32768, index sizeClasses, as the runtime's own tables do.
var classBySize8, classBySize128 = classTables()

func classTables() (small [1024/smallStep + 1]uint8, large [(maxSmallSize-1024)/largeStep + 1]uint8) {
	c := 0
	for i := 1; i < len(small); i++ {
		for int(sizeClasses[c]) < i*smallStep {
			c++
		}
		small[i] = uint8(c)
	}
	for i := range large {
		for int(sizeClasses[c]) < 1024+i*largeStep {
			c++
		}
		large[i] = uint8(c)
	}
	return small, large
}

// allocSize returns the bytes the Go heap holds for a pointer-free object
// of n bytes, such as a []byte or string of length n: 0 for 0, n rounded
// up to its size class up to 32 KiB, and to whole 8 KiB pages above.
func allocSize(n uint64) uint64 {
	switch {
	case n == 0:
		return 0
	case n <= 1024:
		return uint64(sizeClasses[classBySize8[(n+smallStep-1)/smallStep]])
	case n <= maxSmallSize:
		return uint64(sizeClasses[classBySize128[(n-1024+largeStep-1)/largeStep]])
	case n > 1<<62:
		return n
	}
	return (n + pageSize - 1) &^ (pageSize - 1)
}

// entryWeight is the heap an entry with an engine key of keyLen bytes and a
// value of valueLen bytes holds.
func entryWeight(keyLen, valueLen int) uint64 {
	return allocSize(uint64(keyLen)) + allocSize(uint64(valueLen)) + EntryOverhead
}

// largestValue returns the longest value whose entry, with a one-byte key,
// weighs at most w.
func largestValue(w uint64) uint64 {
	const minKey = smallStep // a key of 1 to 8 bytes
	if w < EntryOverhead+minKey {
		return 0
	}
	limit := w - EntryOverhead - minKey
	if limit > maxSmallSize {
		return limit &^ (pageSize - 1)
	}
	for i := len(sizeClasses) - 1; i >= 0; i-- {
		if uint64(sizeClasses[i]) <= limit {
			return uint64(sizeClasses[i])
		}
	}
	return 0
}
