package cachetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/cachekit/cachekit"
)

// The rules of cachekit.Versioner. A cache need not implement it; the rules
// check it whenever the cache does, and fail a wrapper that hides the
// Versioner of the cache it wraps. A cache whose server cannot give versions
// (its AddVersion fails with ErrUnsupported) skips them.

// versioner returns c's Versioner, skipping t when c has none (after
// checking that c does not hide one) or its server gives no versions.
func versioner(t *testing.T, c cachekit.Cache) cachekit.Versioner {
	t.Helper()
	v, ok := c.(cachekit.Versioner)
	if !ok {
		wantNotHidden[cachekit.Versioner](t, c, "Versioner")
		t.Skip("the cache does not implement cachekit.Versioner (it need not)")
	}
	_, err := v.AddVersion(bg, "version-probe", []byte("p"), 0)
	if errors.Is(err, cachekit.ErrUnsupported) {
		wantMiss(t, c, "version-probe")
		t.Skipf("the cache's server gives no versions: %v", err)
	}
	if err != nil {
		t.Fatalf("AddVersion(version-probe): %v", err)
	}
	return v
}

// getVersion returns key's version, failing t unless key holds want.
func getVersion(t *testing.T, v cachekit.Versioner, key string, want []byte) uint64 {
	t.Helper()
	got, ver, err := v.GetVersion(bg, key)
	if err != nil {
		t.Fatalf("GetVersion(%q): %v; want %q", key, err, abbrev(want))
	}
	if got == nil || !bytes.Equal(got, want) {
		t.Fatalf("GetVersion(%q) = %q (nil: %v); want %q", key, abbrev(got), got == nil, abbrev(want))
	}
	if ver == 0 {
		t.Fatalf("GetVersion(%q) returned version 0; a stored value's version is never 0", key)
	}
	return ver
}

func addVersion(t *testing.T, v cachekit.Versioner, key string, value []byte, ttl time.Duration) uint64 {
	t.Helper()
	ver, err := v.AddVersion(bg, key, value, ttl)
	if err != nil || ver == 0 {
		t.Fatalf("AddVersion(%q, %q, %v) = %d, %v; want a version, nil", key, abbrev(value), ttl, ver, err)
	}
	return ver
}

// wantSwap checks SwapVersion's answer and returns the new version.
func wantSwap(t *testing.T, v cachekit.Versioner, key string, ver uint64, value []byte, ttl time.Duration, want bool) uint64 {
	t.Helper()
	nv, ok, err := v.SwapVersion(bg, key, ver, value, ttl)
	if err != nil || ok != want || (ok != (nv != 0)) {
		t.Fatalf("SwapVersion(%q, version %d, %q) = %d, %v, %v; want swapped %v (with a version when swapped, 0 when not), nil", key, ver, abbrev(value), nv, ok, err, want)
	}
	if ok && nv == ver {
		t.Fatalf("SwapVersion(%q, version %d) swapped and returned the same version; every write gives a new one", key, ver)
	}
	return nv
}

func wantDeleteVersion(t *testing.T, v cachekit.Versioner, key string, ver uint64, want bool) {
	t.Helper()
	ok, err := v.DeleteVersion(bg, key, ver)
	if err != nil || ok != want {
		t.Fatalf("DeleteVersion(%q, version %d) = %v, %v; want %v, nil", key, ver, ok, err, want)
	}
}

// testVersion: a version read with a value matches until the key is
// written, and only then; AddVersion, SwapVersion and DeleteVersion compare
// it atomically and give new versions.
func (s *suite) testVersion(t *testing.T) {
	base := s.namespace(t, "")
	c := s.cacheIn(t, base+"a")
	v := versioner(t, c)

	_, ver, err := v.GetVersion(bg, "missing key")
	var ce *cachekit.Error
	if !errors.Is(err, cachekit.ErrNotFound) || !errors.As(err, &ce) || ce.Op != "GetVersion" || ce.Key != "missing key" || ver != 0 {
		t.Fatalf("GetVersion of a missing key: version %d, %T %v; want 0 and a *cachekit.Error with Op GetVersion, Key %q, wrapping ErrNotFound", ver, err, err, "missing key")
	}
	wantSwap(t, v, "missing key", 1, []byte("x"), 0, false)
	wantDeleteVersion(t, v, "missing key", 1, false)
	wantMiss(t, c, "missing key")

	// A version is stable while nobody writes, and Get agrees.
	mustSet(t, c, "k", []byte("v1"), 0)
	v1 := getVersion(t, v, "k", []byte("v1"))
	if again := getVersion(t, v, "k", []byte("v1")); again != v1 {
		t.Fatalf("GetVersion twice with no write between: versions %d and %d; want the same", v1, again)
	}
	wantValue(t, c, "k", []byte("v1"))

	// SwapVersion: a wrong version (or 0) leaves the key; the right one
	// swaps and gives a new version, which GetVersion then reports.
	wantSwap(t, v, "k", v1+1, []byte("no"), 0, false)
	wantSwap(t, v, "k", 0, []byte("no"), 0, false)
	wantValue(t, c, "k", []byte("v1"))
	v2 := wantSwap(t, v, "k", v1, []byte("v2"), 0, true)
	wantValue(t, c, "k", []byte("v2"))
	if got := getVersion(t, v, "k", []byte("v2")); got != v2 {
		t.Fatalf("GetVersion after SwapVersion = %d; want the version SwapVersion returned, %d", got, v2)
	}
	wantSwap(t, v, "k", v1, []byte("again"), 0, false) // the old version is spent
	wantValue(t, c, "k", []byte("v2"))

	// DeleteVersion: only the current version deletes.
	wantDeleteVersion(t, v, "k", v1, false)
	wantDeleteVersion(t, v, "k", 0, false)
	wantValue(t, c, "k", []byte("v2"))
	wantDeleteVersion(t, v, "k", v2, true)
	wantMiss(t, c, "k")
	wantDeleteVersion(t, v, "k", v2, false)

	// AddVersion: only while absent; its version is the value's.
	a1 := addVersion(t, v, "k", []byte("a1"), 0)
	if got := getVersion(t, v, "k", []byte("a1")); got != a1 {
		t.Fatalf("GetVersion after AddVersion = %d; want the version AddVersion returned, %d", got, a1)
	}
	if a1 == v1 || a1 == v2 {
		t.Fatalf("a key deleted and added again got back an old version (%d; had %d and %d)", a1, v1, v2)
	}
	ver, err = v.AddVersion(bg, "k", []byte("a2"), 0)
	if !errors.Is(err, cachekit.ErrExists) || !errors.As(err, &ce) || ce.Op != "AddVersion" || ver != 0 {
		t.Fatalf("AddVersion of a present key = %d, %v; want 0 and a *cachekit.Error with Op AddVersion wrapping ErrExists", ver, err)
	}
	wantValue(t, c, "k", []byte("a1"))
	wantSwap(t, v, "k", a1, []byte("a3"), 0, true)

	// An empty value is a value, with a version.
	e := addVersion(t, v, "empty", []byte{}, 0)
	got, ver, err := v.GetVersion(bg, "empty")
	if err != nil || got == nil || len(got) != 0 || ver != e {
		t.Fatalf("GetVersion of an empty value = %#v, %d, %v; want a non-nil empty slice, version %d", got, ver, err, e)
	}
	wantSwap(t, v, "empty", e, []byte{}, 0, true)

	// Binary values and keys a backend may have to encode.
	bin := []byte{0, 1, 2, 0xff, '\r', '\n'}
	for _, k := range []string{"a b", "line\nbreak", "日本語", string(make([]byte, 300))} {
		kv := addVersion(t, v, k, bin, 0)
		nv := wantSwap(t, v, k, kv, []byte("END\r\n"), 0, true)
		wantValue(t, c, k, []byte("END\r\n"))
		wantDeleteVersion(t, v, k, nv, true)
		wantMiss(t, c, k)
	}

	// The same key in another namespace has versions of its own.
	other := s.cacheIn(t, base+"b")
	ov := versioner(t, other)
	mustSet(t, c, "shared", []byte("same"), 0)
	mustSet(t, other, "shared", []byte("same"), 0)
	mine := getVersion(t, v, "shared", []byte("same"))
	theirs := getVersion(t, ov, "shared", []byte("same"))
	wantSwap(t, v, "shared", mine, []byte("changed"), 0, true)
	wantValue(t, other, "shared", []byte("same"))
	wantDeleteVersion(t, ov, "shared", theirs, true)
	wantValue(t, c, "shared", []byte("changed"))

	// No aliasing: the caller's slices are not the cache's.
	in := []byte("mine")
	av := addVersion(t, v, "alias", in, 0)
	copy(in, "XXXX")
	wantValue(t, c, "alias", []byte("mine"))
	out, _, err := v.GetVersion(bg, "alias")
	if err != nil {
		t.Fatal(err)
	}
	copy(out, "YYYY")
	in = []byte("ours")
	wantSwap(t, v, "alias", av, in, 0, true)
	copy(in, "ZZZZ")
	wantValue(t, c, "alias", []byte("ours"))
}

// testVersionChanges: every write of a key, by any method, spends the
// version read before it.
func (s *suite) testVersionChanges(t *testing.T) {
	c := s.cache(t)
	v := versioner(t, c)
	cas := s.compareAndSwapper(t, c)
	writes := []struct {
		name  string
		write func() error
	}{
		{"Set of the same value", func() error { return c.Set(bg, "k", []byte("1"), 0) }},
		{"SetMany", func() error { return c.SetMany(bg, map[string][]byte{"k": []byte("1")}, 0) }},
		{"Increment", func() error { _, err := c.Increment(bg, "k", 1); return err }},
		{"Increment by a negative delta", func() error { _, err := c.Increment(bg, "k", -1); return err }},
		{"CompareAndSwap to the same value", func() error {
			cur, err := c.Get(bg, "k")
			if err != nil {
				return err
			}
			ok, err := cas.CompareAndSwap(bg, "k", cur, cur, 0)
			if err == nil && !ok {
				err = fmt.Errorf("CompareAndSwap of the value read reported false")
			}
			return err
		}},
		{"Delete and Add of the same value", func() error {
			cur, err := c.Get(bg, "k")
			if err != nil {
				return err
			}
			if _, err := c.Delete(bg, "k"); err != nil {
				return err
			}
			return c.Add(bg, "k", cur, 0)
		}},
	}
	mustSet(t, c, "k", []byte("1"), 0)
	for _, w := range writes {
		cur, _, err := v.GetVersion(bg, "k")
		if err != nil {
			t.Fatalf("GetVersion before %s: %v", w.name, err)
		}
		before := getVersion(t, v, "k", cur)
		if err := w.write(); err != nil {
			t.Fatalf("%s: %v", w.name, err)
		}
		after, _, err := v.GetVersion(bg, "k")
		if err != nil {
			t.Fatalf("GetVersion after %s: %v", w.name, err)
		}
		if _, ok, err := v.SwapVersion(bg, "k", before, []byte("lost"), 0); err != nil || ok {
			t.Fatalf("SwapVersion with the version read before %s = %v, %v; want false, nil: the write must give a new version", w.name, ok, err)
		}
		wantValue(t, c, "k", after)
	}
}

// testVersionErrors: invalid keys, negative TTLs, oversize values and the
// caller's context fail as they fail Get, Set and Add, and change nothing.
func (s *suite) testVersionErrors(t *testing.T) {
	c := s.cache(t)
	v := versioner(t, c)
	mustSet(t, c, "k", []byte("v"), 0)
	ver := getVersion(t, v, "k", []byte("v"))
	for _, k := range []string{"", string(make([]byte, cachekit.MaxKeySize+1))} {
		_, _, err := v.GetVersion(bg, k)
		wantErrIs(t, fmt.Sprintf("GetVersion(%d-byte key)", len(k)), err, cachekit.ErrInvalidKey)
		_, err = v.AddVersion(bg, k, []byte("v"), 0)
		wantErrIs(t, fmt.Sprintf("AddVersion(%d-byte key)", len(k)), err, cachekit.ErrInvalidKey)
		_, _, err = v.SwapVersion(bg, k, ver, []byte("v"), 0)
		wantErrIs(t, fmt.Sprintf("SwapVersion(%d-byte key)", len(k)), err, cachekit.ErrInvalidKey)
		_, err = v.DeleteVersion(bg, k, ver)
		wantErrIs(t, fmt.Sprintf("DeleteVersion(%d-byte key)", len(k)), err, cachekit.ErrInvalidKey)
	}
	_, err := v.AddVersion(bg, "new", []byte("v"), -time.Second)
	wantErrIs(t, "AddVersion with ttl -1s", err, cachekit.ErrInvalidTTL)
	_, _, err = v.SwapVersion(bg, "k", ver, []byte("w"), -time.Second)
	wantErrIs(t, "SwapVersion with ttl -1s", err, cachekit.ErrInvalidTTL)
	if s.opts.MaxValueSize > 0 {
		big := make([]byte, s.opts.MaxValueSize+1)
		_, err = v.AddVersion(bg, "new", big, 0)
		wantErrIs(t, "AddVersion of MaxValueSize+1 bytes", err, cachekit.ErrTooLarge)
		_, _, err = v.SwapVersion(bg, "k", ver, big, 0)
		wantErrIs(t, "SwapVersion of MaxValueSize+1 bytes", err, cachekit.ErrTooLarge)
	}
	ctx, cancel := context.WithCancel(bg)
	cancel()
	_, _, err = v.SwapVersion(ctx, "k", ver, []byte("w"), 0)
	wantErrIs(t, "SwapVersion with a cancelled context", err, context.Canceled)
	_, err = v.DeleteVersion(ctx, "k", ver)
	wantErrIs(t, "DeleteVersion with a cancelled context", err, context.Canceled)
	wantMiss(t, c, "new")
	if got := getVersion(t, v, "k", []byte("v")); got != ver {
		t.Fatalf("version after refused writes = %d; want it unchanged, %d", got, ver)
	}
	// Errors carry the operation and key.
	_, _, err = v.SwapVersion(bg, "k", ver, []byte("w"), -time.Second)
	var ce *cachekit.Error
	if !errors.As(err, &ce) || ce.Op != "SwapVersion" || ce.Key != "k" {
		t.Fatalf("SwapVersion with ttl -1s: %v; want a *cachekit.Error with Op SwapVersion, Key k", err)
	}
	_, err = v.DeleteVersion(ctx, "k", ver)
	if !errors.As(err, &ce) || ce.Op != "DeleteVersion" || ce.Key != "k" {
		t.Fatalf("DeleteVersion with a cancelled context: %v; want a *cachekit.Error with Op DeleteVersion, Key k", err)
	}
}

// testVersionTTL: AddVersion and SwapVersion set the TTL they are given,
// and an expired key has no version to match.
func (s *suite) testVersionTTL(t *testing.T) {
	c := s.cache(t)
	v := versioner(t, c)
	a := addVersion(t, v, "a", []byte("v"), 300*time.Millisecond)
	eventuallyMiss(t, c, "a")
	wantSwap(t, v, "a", a, []byte("late"), 0, false)
	wantDeleteVersion(t, v, "a", a, false)
	wantMiss(t, c, "a")
	addVersion(t, v, "a", []byte("again"), 0) // expired: absent

	mustSet(t, c, "k", []byte("v1"), 0)
	k1 := getVersion(t, v, "k", []byte("v1"))
	wantSwap(t, v, "k", k1, []byte("v2"), 300*time.Millisecond, true)
	eventuallyMiss(t, c, "k")

	mustSet(t, c, "p", []byte("v1"), 1500*time.Millisecond) // long enough to swap it in time on a loaded machine
	p1 := getVersion(t, v, "p", []byte("v1"))
	wantSwap(t, v, "p", p1, []byte("v2"), 0, true)             // 0: no expiry
	mustSet(t, c, "probe", []byte("x"), 1500*time.Millisecond) // set after p: expires after p would have
	eventuallyMiss(t, c, "probe")
	time.Sleep(time.Second) // past any one-second resolution boundary
	wantValue(t, c, "p", []byte("v2"))
	wantValue(t, c, "a", []byte("again"))
}

// testVersionConcurrent: of concurrent swaps from one version exactly one
// wins, and increments made of GetVersion and SwapVersion, mixed with
// increments by value (CompareAndSwap), lose none.
func (s *suite) testVersionConcurrent(t *testing.T) {
	c := s.cache(t)
	v := versioner(t, c)
	cas := s.compareAndSwapper(t, c)
	mustSet(t, c, "race", []byte("0"), 0)
	for round := range 3 {
		cur, ver, err := v.GetVersion(bg, "race")
		if err != nil {
			t.Fatal(err)
		}
		winner := oneWinner(t, fmt.Sprintf("SwapVersions from %q (round %d)", cur, round), func(i int) (bool, error) {
			_, ok, err := v.SwapVersion(bg, "race", ver, []byte(strconv.Itoa(i)), 0)
			return ok, err
		})
		wantValue(t, c, "race", []byte(strconv.Itoa(winner)))
	}

	concurrentCount(t, c, "counter", func(w int) (bool, error) {
		b, ver, err := v.GetVersion(bg, "counter")
		cur, n, err := readCounter(b, err)
		if err != nil {
			return false, err
		}
		next := []byte(strconv.Itoa(n + 1))
		switch {
		case cur == nil:
			_, err = v.AddVersion(bg, "counter", next, 0)
			if errors.Is(err, cachekit.ErrExists) {
				return false, nil
			}
			return err == nil, err
		case w%2 == 0:
			_, ok, err := v.SwapVersion(bg, "counter", ver, next, 0)
			return ok, err
		}
		return cas.CompareAndSwap(bg, "counter", cur, next, 0)
	})
}
