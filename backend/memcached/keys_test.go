package memcached

import (
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"strings"
	"testing"
)

// legalServerKey reports whether memcached accepts k as a key.
func legalServerKey(k string) bool {
	if k == "" || len(k) > maxServerKey {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !plainByte(k[i]) {
			return false
		}
	}
	return true
}

func TestEncodeKeyForms(t *testing.T) {
	long250 := strings.Repeat("x", 250)
	long251 := strings.Repeat("x", 251)
	sum := sha256.Sum256([]byte(long251))
	tests := []struct {
		key, want string
	}{
		{"user:42", "user:42"},
		{"a_b", "a_b"},
		{"{tag}", "{tag}"},
		{"a b", "~YSBi"},
		{"~YSBi", "~fllTQmk"}, // looks encoded, so it is encoded itself
		{"~", "~fg"},
		{"tab\tkey", "~dGFiCWtleQ"},
		{"\x00", "~AA"},
		{"\x7f", "~fw"},
		{"日本語", "~5pel5pys6Kqe"},
		{long250, long250},
		{long251, "~~" + hex.EncodeToString(sum[:])},
	}
	for _, tc := range tests {
		got := encodeKey(tc.key, maxServerKey)
		if got != tc.want {
			t.Errorf("encodeKey(%.20q) = %q; want %q", tc.key, got, tc.want)
		}
		if !legalServerKey(got) {
			t.Errorf("encodeKey(%.20q) = %q is not a legal memcached key", tc.key, got)
		}
	}
	// A shorter budget moves keys to the longer-lived forms, still legal.
	if got := encodeKey(strings.Repeat("y", 100), 99); !strings.HasPrefix(got, "~") || len(got) > 99 {
		t.Errorf("100-byte key in 99 bytes = %q", got)
	}
	if got := encodeKey(strings.Repeat(" ", 60), 70); got[:2] != "~~" || len(got) != 66 {
		t.Errorf("60 spaces in 70 bytes = %q; want the hash form", got)
	}
}

// randomKey returns keys biased toward the edges of the encoding: markers,
// base64 and hex alphabets, unsafe bytes, and lengths around the limits.
func randomKey(r *rand.Rand) string {
	alphabets := []string{
		"~",
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
		"0123456789abcdef",
		" \t\r\n\x00\x7f\xff\x80:=",
		"~:ab",
	}
	var n int
	switch r.IntN(4) {
	case 0:
		n = 1 + r.IntN(4)
	case 1:
		n = 1 + r.IntN(40)
	case 2:
		n = 180 + r.IntN(80) // around the 250-byte limit and the base64 cut-off
	default:
		n = 1 + r.IntN(600)
	}
	b := make([]byte, n)
	for i := range b {
		a := alphabets[r.IntN(len(alphabets))]
		b[i] = a[r.IntN(len(a))]
	}
	if r.IntN(3) == 0 {
		b[0] = marker
	}
	return string(b)
}

func TestEncodeKeyInjective(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	keys := map[string]bool{}
	for len(keys) < 30000 {
		keys[randomKey(r)] = true
	}
	// Encodings of keys are keys too: an adversary can store the encoded
	// form of another key under its own name.
	for k := range keys {
		if len(keys) > 40000 {
			break
		}
		keys[encodeKey(k, maxServerKey)] = true
	}
	for _, prefix := range []string{"", "~app:1x3f:", generationPrefix(namespacePart(strings.Repeat("n", 64)), 1<<63)} {
		seen := make(map[string]string, len(keys))
		for k := range keys {
			sk := serverKey(prefix, k)
			if !legalServerKey(sk) {
				t.Fatalf("serverKey(%q, %.30q) = %q: not a legal memcached key", prefix, k, sk)
			}
			if !strings.HasPrefix(sk, prefix) {
				t.Fatalf("serverKey(%q, %.30q) = %q: lost its prefix", prefix, k, sk)
			}
			if other, dup := seen[sk]; dup {
				t.Fatalf("keys %.40q and %.40q both encode to %q", k, other, sk)
			}
			seen[sk] = k
		}
	}
}

func TestNamespaceKeysAreDisjoint(t *testing.T) {
	// Namespaced server keys never equal a key of a cache without a
	// namespace, of another namespace, or a generation key.
	r := rand.New(rand.NewPCG(3, 4))
	namespaces := []string{"app", "a:b", "a", "~x", "=y", "app:1", "ns with space", strings.Repeat("n", 64), strings.Repeat("n", 65), "日本"}
	owner := map[string]string{}
	claim := func(sk, who string) {
		t.Helper()
		if prev, dup := owner[sk]; dup && prev != who {
			t.Fatalf("server key %q belongs to %s and %s", sk, prev, who)
		}
		owner[sk] = who
	}
	var keys []string
	for range 2000 {
		keys = append(keys, randomKey(r))
	}
	// Keys that spell out what a namespaced key looks like.
	keys = append(keys, "~app:1:k", "app:1:k", "~app:gen", "app:gen", "~app:", "gen")
	for _, k := range keys {
		claim(serverKey("", k), "no namespace: "+k)
	}
	for _, ns := range namespaces {
		part := namespacePart(ns)
		if strings.ContainsAny(part, ":~") || !legalServerKey(part) {
			t.Fatalf("namespacePart(%q) = %q", ns, part)
		}
		claim(generationKey(part), "generation of "+ns)
		for _, gen := range []uint64{0, 1, 36, 1 << 40} {
			prefix := generationPrefix(part, gen)
			for _, k := range keys {
				claim(serverKey(prefix, k), ns+"/"+prefix+": "+k)
			}
		}
	}
	if namespacePart("a:b") == namespacePart("a_b") || namespacePart("=y") == "=y" {
		t.Fatal("namespaces that are not plain must be hashed")
	}
}

func FuzzEncodeKey(f *testing.F) {
	for _, k := range []string{"a b", "~YSBi", "~~00", strings.Repeat("z", 251)} {
		f.Add(k, "")
		f.Add(k, "~ns:1:")
	}
	f.Fuzz(func(t *testing.T, a, prefix string) {
		if a == "" || len(a) > 4096 || (prefix != "" && prefix != "~ns:1:") {
			return
		}
		sa := serverKey(prefix, a)
		if !legalServerKey(sa) {
			t.Fatalf("serverKey(%q) = %q is not legal", a, sa)
		}
		// Any other key that could produce the same server key must be a.
		b := sa[len(prefix):]
		if b != a && serverKey(prefix, b) == sa {
			t.Fatalf("%q and %q collide on %q", a, b, sa)
		}
	})
}
