package cachetest

import (
	"bytes"
	"errors"
	"strconv"
	"sync"
	"testing"

	"github.com/cachekit/cachekit"
)

// The rules of cachekit.SharedGetter. A cache need not implement it; the
// rules check it whenever the cache does, and fail a wrapper that hides the
// GetShared of the cache it wraps.

// sharedGetter returns c's GetShared, skipping t when c has none (after
// checking that c does not hide one).
func sharedGetter(t *testing.T, c cachekit.Cache) cachekit.SharedGetter {
	t.Helper()
	if sg, ok := c.(cachekit.SharedGetter); ok {
		return sg
	}
	wantNotHidden[cachekit.SharedGetter](t, c, "SharedGetter")
	t.Skip("the cache does not implement cachekit.SharedGetter (it need not)")
	return nil
}

// wantShared checks that GetShared(key) returns what Get returns, want,
// in a slice whose capacity is its length, and returns that slice.
func wantShared(t *testing.T, c cachekit.Cache, sg cachekit.SharedGetter, key string, want []byte) []byte {
	t.Helper()
	got, err := sg.GetShared(bg, key)
	if err != nil {
		t.Fatalf("GetShared(%q): %v; want %q", key, err, abbrev(want))
	}
	if got == nil || !bytes.Equal(got, want) {
		t.Fatalf("GetShared(%q) = %q (nil: %v); want %q", key, abbrev(got), got == nil, abbrev(want))
	}
	if cap(got) != len(got) {
		t.Fatalf("GetShared(%q) returned a slice of length %d and capacity %d; want them equal, so that an append cannot write into shared bytes", key, len(got), cap(got))
	}
	wantValue(t, c, key, want) // Get agrees
	return got
}

// testSharedGet checks that GetShared is Get without the copy: the same
// bytes, the same misses, the same errors (named "Get").
func (s *suite) testSharedGet(t *testing.T) {
	c := s.cache(t)
	sg := sharedGetter(t, c)

	_, err := sg.GetShared(bg, "missing key")
	var ce *cachekit.Error
	if !errors.Is(err, cachekit.ErrNotFound) || !errors.As(err, &ce) || ce.Op != "Get" || ce.Key != "missing key" {
		t.Fatalf("GetShared of a missing key: %T %v; want a *cachekit.Error with Op Get, Key %q, wrapping ErrNotFound", err, err, "missing key")
	}

	for i, v := range [][]byte{[]byte("v"), []byte("hello, world"), {0, 1, 2, 0xff, 0xfe, '\r', '\n'}, bytes.Repeat([]byte("large "), 20000)} {
		key := "k" + strconv.Itoa(i)
		mustSet(t, c, key, v, 0)
		wantShared(t, c, sg, key, v)
	}
	mustSet(t, c, "empty", []byte{}, 0)
	wantShared(t, c, sg, "empty", []byte{})

	if err := c.SetMany(bg, map[string][]byte{"m": []byte("many")}, 0); err != nil {
		t.Fatal(err)
	}
	wantShared(t, c, sg, "m", []byte("many"))
	if _, err := c.Increment(bg, "n", 7); err != nil {
		t.Fatal(err)
	}
	wantShared(t, c, sg, "n", []byte("7"))

	if _, err := c.Delete(bg, "k0"); err != nil {
		t.Fatal(err)
	}
	if got, err := sg.GetShared(bg, "k0"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("GetShared of a deleted key = %q, %v; want ErrNotFound", abbrev(got), err)
	}

	for _, k := range []string{"", string(make([]byte, cachekit.MaxKeySize+1))} {
		_, err := sg.GetShared(bg, k)
		if !errors.Is(err, cachekit.ErrInvalidKey) || !errors.As(err, &ce) || ce.Op != "Get" {
			t.Errorf("GetShared with a %d-byte key: %T %v; want a *cachekit.Error with Op Get wrapping ErrInvalidKey", len(k), err, err)
		}
	}
}

// testSharedGetImmutable checks the promise that makes sharing safe: bytes
// that GetShared returned never change, whatever is done to their key
// afterwards.
func (s *suite) testSharedGetImmutable(t *testing.T) {
	c := s.cache(t)
	sg := sharedGetter(t, c)

	type kept struct {
		what string
		b    []byte
		want []byte
	}
	var all []kept
	keep := func(what, key string, want []byte) {
		t.Helper()
		b := wantShared(t, c, sg, key, want)
		all = append(all, kept{what, b, bytes.Clone(want)})
	}

	mustSet(t, c, "k", []byte("first"), 0)
	keep("a value later overwritten with Set", "k", []byte("first"))
	mustSet(t, c, "k", []byte("other"), 0) // same length: a backend might reuse the bytes
	keep("a value later overwritten with SetMany", "k", []byte("other"))
	if err := c.SetMany(bg, map[string][]byte{"k": []byte("third")}, 0); err != nil {
		t.Fatal(err)
	}
	keep("a value later given a TTL with Expire", "k", []byte("third"))
	if _, err := c.Expire(bg, "k", 0); err != nil {
		t.Fatal(err)
	}
	keep("a value later deleted", "k", []byte("third"))
	if _, err := c.Delete(bg, "k"); err != nil {
		t.Fatal(err)
	}
	if err := c.Add(bg, "k", []byte("forth"), 0); err != nil {
		t.Fatal(err)
	}

	mustSet(t, c, "n", []byte("41"), 0)
	keep("a counter later incremented", "n", []byte("41"))
	if _, err := c.Increment(bg, "n", 1); err != nil { // "42": same length
		t.Fatal(err)
	}

	if cas, ok := c.(cachekit.CompareAndSwapper); ok {
		mustSet(t, c, "s", []byte("old!"), 0)
		keep("a value later swapped with CompareAndSwap", "s", []byte("old!"))
		if ok, err := cas.CompareAndSwap(bg, "s", []byte("old!"), []byte("new!"), 0); err != nil || !ok {
			t.Fatalf("CompareAndSwap = %v, %v; want true, nil", ok, err)
		}
	}
	if cad, ok := c.(cachekit.CompareAndDeleter); ok {
		mustSet(t, c, "d", []byte("gone"), 0)
		keep("a value later deleted with CompareAndDelete", "d", []byte("gone"))
		if ok, err := cad.CompareAndDelete(bg, "d", []byte("gone")); err != nil || !ok {
			t.Fatalf("CompareAndDelete = %v, %v; want true, nil", ok, err)
		}
	}

	// Reads of other keys reuse no buffer either.
	for i := range 4 {
		mustSet(t, c, "r"+strconv.Itoa(i), []byte("round"+strconv.Itoa(i)), 0)
		wantShared(t, c, sg, "r"+strconv.Itoa(i), []byte("round"+strconv.Itoa(i)))
	}

	for _, k := range all {
		if !bytes.Equal(k.b, k.want) {
			t.Errorf("bytes GetShared returned for %s changed from %q to %q; they must never change", k.what, k.want, k.b)
		}
	}
}

// testSharedGetConcurrent reads a key with GetShared while other
// goroutines overwrite it, and checks that every slice read held one of the
// values written and, after the writes, still holds what it held when it
// was read. Under the race detector, a backend that writes into bytes it
// has handed out is also reported as a data race.
func (s *suite) testSharedGetConcurrent(t *testing.T) {
	c := s.cache(t)
	sg := sharedGetter(t, c)
	const writers, readers, rounds = 2, 4, 100
	value := func(w, i int) []byte { return []byte("w" + strconv.Itoa(w) + "-" + strconv.Itoa(i%10)) }
	mustSet(t, c, "k", value(0, 0), 0)

	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				if err := c.Set(bg, "k", value(w, i), 0); err != nil {
					t.Errorf("Set: %v", err)
					return
				}
			}
		}()
	}
	type read struct{ b, then []byte }
	got := make([][]read, readers)
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				b, err := sg.GetShared(bg, "k")
				if err != nil {
					t.Errorf("GetShared: %v", err)
					return
				}
				got[r] = append(got[r], read{b, bytes.Clone(b)})
			}
		}()
	}
	wg.Wait()
	valid := map[string]bool{}
	for w := range writers {
		for i := range 10 {
			valid[string(value(w, i))] = true
		}
	}
	n := 0
	for _, rs := range got {
		for _, r := range rs {
			n++
			if !valid[string(r.then)] {
				t.Fatalf("GetShared returned %q during concurrent writes, which no writer wrote", r.then)
			}
			if !bytes.Equal(r.b, r.then) {
				t.Fatalf("a slice GetShared returned as %q during concurrent writes now holds %q; it must never change", r.then, r.b)
			}
		}
	}
	if n != readers*rounds {
		t.Fatalf("%d reads recorded; want %d", n, readers*rounds)
	}
}
