package memory

import (
	"slices"
	"testing"
)

// TestAllocSizeMatchesRuntime checks allocSize against what the running
// runtime allocates: slices.Grow on a nil slice rounds up to the size class.
func TestAllocSizeMatchesRuntime(t *testing.T) {
	check := func(n int) {
		t.Helper()
		if got, want := allocSize(uint64(n)), uint64(cap(slices.Grow([]byte(nil), n))); got != want {
			t.Fatalf("allocSize(%d) = %d; the runtime allocates %d", n, got, want)
		}
	}
	for n := 0; n <= 40000; n++ {
		check(n)
	}
	for _, n := range []int{65535, 65536, 65537, 100000, 1 << 20, 1<<20 + 1, 3<<20 + 12345} {
		check(n)
	}
}

func TestLargestValue(t *testing.T) {
	for _, w := range []uint64{0, 100, 167, 168, 175, 176, 1000, 33000, 40000, 1 << 20, 1<<20 + 8191, 5 << 30} {
		n := largestValue(w)
		if n > 0 && entryWeight(1, int(n)) > w {
			t.Errorf("largestValue(%d) = %d weighs %d", w, n, entryWeight(1, int(n)))
		}
		if w > 200 && entryWeight(1, int(n)+1) <= w {
			t.Errorf("largestValue(%d) = %d, but %d fits too", w, n, n+1)
		}
	}
}
