package memcached

import (
	"math"
	"time"
)

// maxRelative is the longest expiry memcached reads as seconds from now:
// larger values are absolute Unix times.
const maxRelative = 30 * 24 * 60 * 60 // 2592000, 30 days

// expiration converts a TTL to memcached's expiration field and to the
// absolute expiry (Unix seconds, 0 for none) that the backend keeps in the
// item's flags so that Increment can carry it over.
//
// memcached's clock ticks once a second and an item with a relative expiry
// of n seconds expires at the n-th tick, that is after between n-1 and n
// seconds. So the TTL is rounded up to whole seconds and one second is
// added: an item lives at least ttl and less than ttl+2s, and a sub-second
// TTL never becomes 0 ("forever") or an immediate expiry. When the result
// exceeds 30 days it is sent as an absolute Unix time, which memcached reads
// against its own clock (so clock skew between client and server shifts it).
// Absolute times are capped at 2038-01-19 (the int32 limit of the protocol
// field).
func expiration(ttl time.Duration, now time.Time) (exptime int32, absolute uint32) {
	if ttl <= 0 {
		return 0, 0
	}
	secs := int64(ttl / time.Second)
	if ttl%time.Second != 0 {
		secs++
	}
	secs++ // memcached's one-second tick, see above
	abs := now.Unix() + secs
	if abs > math.MaxInt32 || abs < 0 {
		abs = math.MaxInt32
	}
	if secs <= maxRelative {
		return int32(secs), uint32(abs)
	}
	return int32(abs), uint32(abs)
}

// flagsExpiration returns the expiration field that re-applies the absolute
// expiry recorded in an item's flags. Flags that cannot be one of ours
// (0, or small values another client wrote) mean no expiry.
func flagsExpiration(flags uint32) int32 {
	if flags > maxRelative && flags <= math.MaxInt32 {
		return int32(flags)
	}
	return 0
}
