package redis

import "strings"

// numSlots is the number of hash slots in a Redis Cluster.
const numSlots = 16384

// slot returns the Redis Cluster hash slot of key: CRC16 (XMODEM) of the key,
// or of its hash tag (the text between the first "{" and the next "}", when
// not empty), modulo 16384. It matches CLUSTER KEYSLOT.
func slot(key string) uint16 {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc = crc<<8 ^ crc16tab[byte(crc>>8)^key[i]]
	}
	return crc % numSlots
}

// crc16tab is the CRC16-CCITT (XMODEM, polynomial 0x1021) table that Redis
// Cluster uses (cluster spec, appendix A).
var crc16tab = func() (t [256]uint16) {
	for i := range t {
		crc := uint16(i) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		t[i] = crc
	}
	return t
}()

// escapeGlob escapes the characters that are special in a Redis glob-style
// pattern (SCAN MATCH, KEYS): * ? [ ] and the backslash itself. Redis's
// matcher treats a backslash as "the next character literally", so the
// result matches exactly the literal text s.
func escapeGlob(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
