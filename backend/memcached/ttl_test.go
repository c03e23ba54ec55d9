package memcached

import (
	"math"
	"testing"
	"time"
)

func TestExpiration(t *testing.T) {
	now := time.Unix(1_700_000_000, 250_000_000) // a quarter second past a whole second
	const day = 24 * time.Hour
	abs := func(secs int64) int32 { return int32(now.Unix() + secs) }
	tests := []struct {
		ttl      time.Duration
		exptime  int32
		absolute uint32
	}{
		{0, 0, 0},                                                      // no expiry
		{time.Nanosecond, 2, uint32(abs(2))},                           // never 0 ("forever")
		{999 * time.Millisecond, 2, uint32(abs(2))},                    // up to 1s, plus the tick
		{time.Second, 2, uint32(abs(2))},                               // whole seconds plus the tick
		{1500 * time.Millisecond, 3, uint32(abs(3))},                   // up to 2s, plus the tick
		{30*day - time.Second, maxRelative, uint32(abs(maxRelative))},  // the longest relative
		{30 * day, abs(maxRelative + 1), uint32(abs(maxRelative + 1))}, // absolute from here on
		{30*day + time.Second, abs(maxRelative + 2), uint32(abs(maxRelative + 2))},
		{365 * day, abs(365*86400 + 1), uint32(abs(365*86400 + 1))},
		{100 * 365 * day, math.MaxInt32, math.MaxInt32}, // capped at 2038
		{time.Duration(math.MaxInt64), math.MaxInt32, math.MaxInt32},
	}
	for _, tc := range tests {
		exp, a := expiration(tc.ttl, now)
		if exp != tc.exptime || a != tc.absolute {
			t.Errorf("expiration(%v) = %d, %d; want %d, %d", tc.ttl, exp, a, tc.exptime, tc.absolute)
		}
		if tc.ttl > 0 && exp == 0 {
			t.Errorf("expiration(%v) = 0, which memcached reads as no expiry", tc.ttl)
		}
		if exp > maxRelative && int64(exp) < now.Unix() {
			t.Errorf("expiration(%v) = %d, an absolute time in the past", tc.ttl, exp)
		}
	}
}

func TestFlagsExpiration(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	for _, ttl := range []time.Duration{time.Second, time.Hour, 40 * 24 * time.Hour} {
		_, abs := expiration(ttl, now)
		if got := flagsExpiration(abs); int64(got) != int64(abs) {
			t.Errorf("flagsExpiration(%d) = %d; want the absolute time back", abs, got)
		}
	}
	for _, f := range []uint32{0, 1, 7, maxRelative, math.MaxInt32 + 1, math.MaxUint32} {
		if got := flagsExpiration(f); got != 0 {
			t.Errorf("flagsExpiration(%d) = %d; want 0 (not one of ours: no expiry)", f, got)
		}
	}
}

func TestParseInt64(t *testing.T) {
	for _, ok := range []string{"0", "42", "-7", "9223372036854775807", "-9223372036854775808"} {
		if _, err := parseInt64([]byte(ok)); err != nil {
			t.Errorf("parseInt64(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "+5", " 5", "5 ", "1.5", "abc", "12abc", "99999999999999999999", "0x10"} {
		if n, err := parseInt64([]byte(bad)); err == nil {
			t.Errorf("parseInt64(%q) = %d; want an error", bad, n)
		}
	}
}
