package memcached

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
)

// Server keys.
//
// memcached keys are at most 250 bytes of printable ASCII other than space.
// A cachekit key may be any non-empty string of up to cachekit.MaxKeySize
// bytes, so every key is mapped to a server key by an injective encoding:
//
//	plain   the key itself, when every byte is printable ASCII (0x21-0x7e),
//	        it does not start with '~', and it fits
//	b64     "~" + base64url(key) without padding, when that fits
//	hash    "~~" + hex(sha256(key)), for keys too long for the above
//
// The three forms are told apart by their first bytes: plain never starts
// with '~' (a plain-looking key that does is encoded, so "~YSBi" cannot
// collide with the encoding of "a b"), b64 starts with '~' and a base64url
// byte, hash with "~~". Within a form the mapping is injective (identity,
// base64), except that two keys with the same SHA-256 would share a hash
// form, which is collision-free for every practical purpose.
//
// With a namespace, server keys are
//
//	"~" + ns + ":" + base36(generation) + ":" + encoded key
//
// where ns is the namespace itself when it is 1 to 64 printable ASCII bytes
// without ':' or '~' and does not start with '=', and otherwise "=" +
// base64url(sha256(namespace)). The ':' after the '~' keeps namespaced keys
// apart from every key of a cache without a namespace (whose encodings never
// hold a ':' after a leading '~'). The generation's reserved keys are
// "~" + ns + ":gen@" + server address, one per server of a [Ring] (the
// Ring sends each to the server it names), or "~" + ns + ":gen" when the
// cache does not know the client's Ring; neither has a base-36 number
// between its first two ':', so neither is ever a data key. The encoded key
// is fitted to what is left of the 250 bytes after the namespace and the
// longest generation (13 base-36 digits), so that its form does not depend
// on the generation: a Ring places a namespaced key by the key without its
// generation, so a Clear never moves keys between servers.

const (
	// maxServerKey is the longest key memcached accepts.
	maxServerKey = 250
	// marker starts every encoded key.
	marker = '~'
	// maxPlainNamespace is the longest namespace used as-is in server keys.
	maxPlainNamespace = 64
	// maxGenDigits is the length of the largest uint64 in base 36.
	maxGenDigits = 13
	// genRoute follows "~" + ns + ":" in a per-server generation key,
	// before the server's address.
	genRoute = "gen@"
)

var b64 = base64.RawURLEncoding

// plainByte reports whether memcached can hold b in a key as it is.
func plainByte(b byte) bool { return b > ' ' && b < 0x7f }

// plainKey reports whether key may be sent as it is (given it fits).
func plainKey(key string) bool {
	if key == "" || key[0] == marker {
		return false
	}
	for i := 0; i < len(key); i++ {
		if !plainByte(key[i]) {
			return false
		}
	}
	return true
}

// encodeKey returns the server form of key in at most budget bytes (budget
// must be at least 66, the length of the hash form). See the comment above
// for the forms.
func encodeKey(key string, budget int) string {
	if len(key) <= budget && plainKey(key) {
		return key
	}
	if 1+b64.EncodedLen(len(key)) <= budget {
		buf := make([]byte, 1+b64.EncodedLen(len(key)))
		buf[0] = marker
		b64.Encode(buf[1:], []byte(key))
		return string(buf)
	}
	sum := sha256.Sum256([]byte(key))
	buf := make([]byte, 2+hex.EncodedLen(len(sum)))
	buf[0], buf[1] = marker, marker
	hex.Encode(buf[2:], sum[:])
	return string(buf)
}

// namespacePart returns the form of namespace used in server keys.
func namespacePart(ns string) string {
	ok := len(ns) >= 1 && len(ns) <= maxPlainNamespace && ns[0] != '='
	for i := 0; ok && i < len(ns); i++ {
		ok = plainByte(ns[i]) && ns[i] != ':' && ns[i] != marker
	}
	if ok {
		return ns
	}
	sum := sha256.Sum256([]byte(ns))
	return "=" + b64.EncodeToString(sum[:])
}

// generationKey is the reserved server key holding a namespace's generation.
func generationKey(nsPart string) string {
	return string(marker) + nsPart + ":gen"
}

// serverGenerationKey is the reserved server key holding a namespace's
// generation on the server addr of a Ring, which sends it to that server.
func serverGenerationKey(nsPart, addr string) string {
	return string(marker) + nsPart + ":" + genRoute + addr
}

// generationPrefix is the prefix of every server key of a namespace in one
// generation.
func generationPrefix(nsPart string, gen uint64) string {
	return string(marker) + nsPart + ":" + strconv.FormatUint(gen, 36) + ":"
}

// serverKey returns the memcached key of key under prefix ("" without a
// namespace).
func serverKey(prefix, key string) string {
	if prefix == "" {
		return encodeKey(key, maxServerKey)
	}
	// The budget leaves room for the longest generation, whatever the
	// prefix's: see the comment above.
	head := strings.IndexByte(prefix, ':') + 1
	return prefix + encodeKey(key, maxServerKey-head-maxGenDigits-1)
}
