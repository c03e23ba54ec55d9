package stats

import (
	"testing"
	"time"
)

func TestBuckets(t *testing.T) {
	prev := -1
	for ns := uint64(0); ns < 1<<20; ns++ {
		b := bucket(ns)
		if b != prev && b != prev+1 {
			t.Fatalf("bucket(%d) = %d after %d: buckets must be contiguous", ns, b, prev)
		}
		prev = b
		// The bucket's value is within 1/16 of every duration in it.
		v := bucketValue(b)
		if diff := float64(v) - float64(ns); diff > float64(ns)/16+0.5 || -diff > float64(ns)/16+0.5 {
			t.Fatalf("bucket(%d) = %d, whose value %d is too far", ns, b, v)
		}
	}
	if got := bucket(1 << 62); got != numBuckets-1 {
		t.Errorf("bucket(2^62) = %d, want the last, %d", got, numBuckets-1)
	}
	if got := bucket(1<<(maxExp+1) - 1); got != numBuckets-1 {
		t.Errorf("bucket(2^41-1) = %d, want the last, %d", got, numBuckets-1)
	}
}

func TestQuantiles(t *testing.T) {
	var h histogram
	if p50, p99 := h.quantiles(0.5, 0.99); p50 != 0 || p99 != 0 {
		t.Errorf("empty: %v %v", p50, p99)
	}
	for i := 1; i <= 1000; i++ {
		h.observe(time.Duration(i) * time.Microsecond)
	}
	p50, p99 := h.quantiles(0.5, 0.99)
	near := func(got, want time.Duration) bool {
		return got >= want*94/100 && got <= want*106/100
	}
	if !near(p50, 500*time.Microsecond) || !near(p99, 990*time.Microsecond) {
		t.Errorf("p50 %v, p99 %v; want about 500µs and 990µs", p50, p99)
	}
	h.observe(-time.Second)
	h.reset()
	if p50, _ := h.quantiles(0.5, 0.99); p50 != 0 {
		t.Errorf("after reset: %v", p50)
	}
}
