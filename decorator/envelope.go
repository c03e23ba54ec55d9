package decorator

import (
	"encoding/binary"
	"strings"
)

// The envelope, version 1. All integers are big-endian; times are Unix
// nanoseconds of the writer's wall clock, 0 meaning "never".
//
//	offset  size  field
//	0       4     magic "\xC1CKD"
//	4       1     version (1)
//	5       1     flags: 1 negative (a remembered "not found"), 2 stale (a
//	              stale value re-stored by fail-safe for the throttle interval)
//	6       8     storedAt: when the value was loaded
//	14      8     expiry: the value is fresh until then
//	22      8     staleUntil: fail-safe may serve it until then
//	30      8     delta: how long fn took to compute it (for early refresh)
//	38      ...   payload: the serializer's encoding of the value
//
// 0xC1 is the one byte MessagePack never uses and is not valid UTF-8, so no
// JSON or MessagePack encoding starts with the magic: a plain reader sees
// an envelope as undecodable, an envelope reader sees plain bytes as
// undecodable, and neither ever returns the other's bytes as a value. With
// a pass-through serializer (serializer.Raw) a plain reader also rejects
// values that start with the magic, so such a value is never cached.
const (
	envMagic     = "\xC1CKD"
	envVersion   = 1
	envHeaderLen = 38

	flagNegative = 1
	flagStale    = 2
	knownFlags   = flagNegative | flagStale
)

type header struct {
	flags      byte
	storedAt   int64
	expiry     int64
	staleUntil int64
	delta      int64
}

func hasMagic(b []byte) bool {
	return len(b) >= len(envMagic) && string(b[:len(envMagic)]) == envMagic
}

func appendEnvelope(dst []byte, h header, payload []byte) []byte {
	dst = append(dst, envMagic...)
	dst = append(dst, envVersion, h.flags)
	dst = binary.BigEndian.AppendUint64(dst, uint64(h.storedAt))
	dst = binary.BigEndian.AppendUint64(dst, uint64(h.expiry))
	dst = binary.BigEndian.AppendUint64(dst, uint64(h.staleUntil))
	dst = binary.BigEndian.AppendUint64(dst, uint64(h.delta))
	return append(dst, payload...)
}

// parseEnvelope splits an envelope into its header and payload. It reports
// false for anything that is not a version 1 envelope.
func parseEnvelope(b []byte) (header, []byte, bool) {
	if len(b) < envHeaderLen || !strings.HasPrefix(string(b[:4]), envMagic) || b[4] != envVersion || b[5]&^knownFlags != 0 {
		return header{}, nil, false
	}
	h := header{
		flags:      b[5],
		storedAt:   int64(binary.BigEndian.Uint64(b[6:])),
		expiry:     int64(binary.BigEndian.Uint64(b[14:])),
		staleUntil: int64(binary.BigEndian.Uint64(b[22:])),
		delta:      int64(binary.BigEndian.Uint64(b[30:])),
	}
	return h, b[envHeaderLen:], true
}
