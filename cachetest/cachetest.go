// Package cachetest is the conformance suite for cachekit.Cache
// implementations. Every backend and every wrapper in cachekit passes it, and
// so should yours:
//
//	func TestConformance(t *testing.T) {
//		cachetest.Run(t, func(t *testing.T, namespace string) cachekit.Cache {
//			return mybackend.New(client, &mybackend.Options{Namespace: namespace})
//		}, nil)
//	}
//
// Each rule of the contract in cachekit.Cache's documentation is one subtest,
// named after the rule, so a failure says which promise was broken. Subtests
// run in parallel, each in a namespace of its own, so the suite can share one
// server. The suite closes every cache it is given.
//
// Besides the Cache methods, the suite holds a cache to the optional
// interfaces of the cachekit package: a cache must implement
// cachekit.CompareAndDeleter and cachekit.CompareAndSwapper (every backend and
// wrapper of cachekit does) unless [Options].SkipCompareAndDelete or
// [Options].SkipCompareAndSwap says it need not; a cache that implements
// cachekit.SharedGetter or cachekit.Versioner (which none must) is held to
// their rules; and a wrapper (a cache with an Unwrap() cachekit.Cache method)
// must never hide an optional interface that the cache it wraps implements.
package cachetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cachekit/cachekit"
)

// NewCacheFunc returns a new cache whose keys live in namespace. Caches made
// for different namespaces must share storage where the backend has shared
// storage (one server, one cluster), so that the suite can check that Clear
// and keys in one namespace leave the others alone.
//
// The suite asks for the empty namespace only when
// [Options].UnnamespacedClear says what Clear does there; otherwise every
// namespace it asks for is non-empty.
type NewCacheFunc func(t *testing.T, namespace string) cachekit.Cache

// Options tunes the suite to a backend. The zero value (or nil) runs every
// rule that applies to all backends.
type Options struct {
	// MaxValueSize is the largest value the backend stores. When it is
	// positive, the suite checks that a value one byte larger fails with
	// ErrTooLarge and leaves the cache usable. Zero skips that rule.
	MaxValueSize int

	// SkipCompareAndDelete says that the cache need not implement
	// cachekit.CompareAndDeleter. By default (false) the suite fails a cache
	// that does not, since every backend and wrapper of cachekit does; set
	// it for a backend of your own that cannot compare and delete
	// atomically. The suite checks CompareAndDelete whenever the cache
	// implements it, and fails a wrapper that hides the CompareAndDelete of
	// the cache it wraps, whatever this field says.
	SkipCompareAndDelete bool

	// SkipCompareAndSwap says that the cache need not implement
	// cachekit.CompareAndSwapper, as SkipCompareAndDelete does for
	// CompareAndDeleter: by default the suite fails a cache without it, and
	// it checks CompareAndSwap whenever the cache implements it.
	SkipCompareAndSwap bool

	// UnnamespacedClear says what Clear does on a cache made with the empty
	// namespace, and makes the suite check it. The zero value,
	// UnnamespacedUntested, never asks NewCacheFunc for the empty namespace.
	UnnamespacedClear UnnamespacedClear
}

// UnnamespacedClear is what Clear does on a cache that has no namespace; see
// [Options].UnnamespacedClear.
type UnnamespacedClear int

const (
	// UnnamespacedUntested: the suite never makes a cache without a
	// namespace.
	UnnamespacedUntested UnnamespacedClear = iota

	// UnnamespacedClearRemoves: Clear removes every key the cache holds, as
	// a cache over a private store does (the memory backend). The suite
	// checks it in a subtest that runs alone, before the parallel ones,
	// since such a Clear may remove other namespaces' keys of the same
	// store; don't declare it for a cache over a server that other tests
	// use at the same time.
	UnnamespacedClearRemoves

	// UnnamespacedClearRefused: Clear fails with an error for which
	// errors.Is(err, cachekit.ErrFlushNotAllowed) reports true, carried in a
	// *cachekit.Error with Op "Clear", and removes nothing, as Redis and
	// Memcached do without AllowFlush: a Clear there would flush the whole
	// server. Every other method works as with a namespace.
	UnnamespacedClearRefused
)

// expiryWait bounds how long the suite waits for a TTL to take effect. It
// leaves room for backends with one-second resolution (Memcached).
const expiryWait = 4 * time.Second

// Run runs the conformance suite against the caches newCache makes.
func Run(t *testing.T, newCache NewCacheFunc, opts *Options) {
	if opts == nil {
		opts = &Options{}
	}
	s := &suite{newCache: newCache, opts: *opts, run: randomID()}
	if opts.UnnamespacedClear != UnnamespacedUntested {
		// Alone, before the parallel subtests: its Clear may reach every
		// namespace of the store.
		t.Run("UnnamespacedClear", s.testUnnamespacedClear)
	}
	tests := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"Miss", s.testMiss},
		{"RoundTrip", s.testRoundTrip},
		{"EmptyValueIsAHit", s.testEmptyValue},
		{"LargeValue", s.testLargeValue},
		{"Overwrite", s.testOverwrite},
		{"DeleteCounts", s.testDeleteCounts},
		{"DeleteMissingKey", s.testDeleteMissing},
		{"SubSecondTTLExpires", s.testSubSecondTTL},
		{"ZeroTTLPersists", s.testZeroTTL},
		{"NegativeTTL", s.testNegativeTTL},
		{"SetReplacesTTL", s.testSetReplacesTTL},
		{"Add", s.testAdd},
		{"AddAfterExpiry", s.testAddAfterExpiry},
		{"IncrementMissingStartsAtZero", s.testIncrementMissing},
		{"IncrementNegativeDelta", s.testIncrementNegative},
		{"IncrementStoresDecimal", s.testIncrementDecimal},
		{"IncrementNotInteger", s.testIncrementNotInteger},
		{"IncrementOverflow", s.testIncrementOverflow},
		{"IncrementKeepsTTL", s.testIncrementKeepsTTL},
		{"IncrementConcurrent", s.testIncrementConcurrent},
		{"ExpireMissingKey", s.testExpireMissing},
		{"ExpireZeroPersists", s.testExpirePersists},
		{"ExpireShortens", s.testExpireShortens},
		{"Exists", s.testExists},
		{"GetManyHitsOnly", s.testGetMany},
		{"SetManyTTLOnEveryKey", s.testSetManyTTL},
		{"ClearOwnNamespaceOnly", s.testClear},
		{"NamespaceIsolation", s.testNamespaceIsolation},
		{"NamespacesNeverNest", s.testNamespacesNeverNest},
		{"WeirdKeys", s.testWeirdKeys},
		{"InvalidKeys", s.testInvalidKeys},
		{"TooLarge", s.testTooLarge},
		{"NoAliasing", s.testNoAliasing},
		{"Concurrency", s.testConcurrency},
		{"CancelledContext", s.testCancelled},
		{"ExpiredDeadline", s.testDeadline},
		{"UseAfterClose", s.testClosed},
		{"ErrorsCarryOpAndKey", s.testErrorShape},
		{"InvalidKeyErrorsNameTheMethod", s.testInvalidKeyErrorShape},
		{"CompareAndDelete", s.testCompareAndDelete},
		{"CompareAndDeleteConcurrent", s.testCompareAndDeleteConcurrent},
		{"CompareAndDeleteExpired", s.testCompareAndDeleteExpired},
		{"CompareAndSwap", s.testCompareAndSwap},
		{"CompareAndSwapConcurrent", s.testCompareAndSwapConcurrent},
		{"CompareAndSwapTTL", s.testCompareAndSwapTTL},
		{"SharedGet", s.testSharedGet},
		{"SharedGetImmutable", s.testSharedGetImmutable},
		{"SharedGetConcurrent", s.testSharedGetConcurrent},
		{"Version", s.testVersion},
		{"VersionChangesOnEveryWrite", s.testVersionChanges},
		{"VersionErrors", s.testVersionErrors},
		{"VersionTTL", s.testVersionTTL},
		{"VersionConcurrent", s.testVersionConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t)
		})
	}
}

type suite struct {
	newCache NewCacheFunc
	opts     Options
	run      string // distinguishes this run's namespaces from earlier runs on a shared server

	mu  sync.Mutex
	seq int
}

func randomID() string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// namespace returns a namespace no other subtest or run uses.
func (s *suite) namespace(t *testing.T, suffix string) string {
	s.mu.Lock()
	s.seq++
	n := s.seq
	s.mu.Unlock()
	return fmt.Sprintf("cachetest-%s-%d%s", s.run, n, suffix)
}

// cache returns a new cache in a fresh namespace, closed when t ends.
func (s *suite) cache(t *testing.T) cachekit.Cache {
	return s.cacheIn(t, s.namespace(t, ""))
}

func (s *suite) cacheIn(t *testing.T, ns string) cachekit.Cache {
	t.Helper()
	c := s.newCache(t, ns)
	if c == nil {
		t.Fatal("NewCacheFunc returned nil")
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

var bg = context.Background()

func mustSet(t *testing.T, c cachekit.Cache, key string, value []byte, ttl time.Duration) {
	t.Helper()
	if err := c.Set(bg, key, value, ttl); err != nil {
		t.Fatalf("Set(%q, %d bytes, %v): %v", key, len(value), ttl, err)
	}
}

func wantValue(t *testing.T, c cachekit.Cache, key string, want []byte) {
	t.Helper()
	got, err := c.Get(bg, key)
	if err != nil {
		t.Fatalf("Get(%q): %v; want %q", key, err, abbrev(want))
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) = %q; want %q", key, abbrev(got), abbrev(want))
	}
}

func wantMiss(t *testing.T, c cachekit.Cache, key string) {
	t.Helper()
	got, err := c.Get(bg, key)
	if !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("Get(%q) = %q, %v; want ErrNotFound", key, abbrev(got), err)
	}
}

func wantErrIs(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: error %v; want errors.Is(err, %v)", what, err, target)
	}
}

func abbrev(b []byte) []byte {
	if len(b) > 40 {
		return append(append([]byte{}, b[:40]...), "..."...)
	}
	return b
}

// eventuallyMiss polls until key is a miss, failing after expiryWait.
func eventuallyMiss(t *testing.T, c cachekit.Cache, key string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		_, err := c.Get(bg, key)
		if errors.Is(err, cachekit.ErrNotFound) {
			return time.Since(start)
		}
		if err != nil {
			t.Fatalf("Get(%q) while waiting for expiry: %v", key, err)
		}
		if time.Since(start) > expiryWait {
			t.Fatalf("Get(%q) still hits %v after its TTL should have ended", key, expiryWait)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func (s *suite) testMiss(t *testing.T) {
	c := s.cache(t)
	wantMiss(t, c, "absent")
	if ok, err := c.Exists(bg, "absent"); err != nil || ok {
		t.Fatalf("Exists(absent) = %v, %v; want false, nil", ok, err)
	}
}

func (s *suite) testRoundTrip(t *testing.T) {
	c := s.cache(t)
	for i, v := range [][]byte{[]byte("v"), []byte("hello, world"), {0, 1, 2, 0xff, 0xfe, '\r', '\n'}, []byte("END\r\n")} {
		key := "k" + strconv.Itoa(i)
		mustSet(t, c, key, v, 0)
		wantValue(t, c, key, v)
	}
}

func (s *suite) testEmptyValue(t *testing.T) {
	c := s.cache(t)
	mustSet(t, c, "empty", []byte{}, 0)
	got, err := c.Get(bg, "empty")
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("Get(empty) = %#v, %v; want a non-nil empty slice, nil", got, err)
	}
	mustSet(t, c, "nil", nil, 0)
	got, err = c.Get(bg, "nil")
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("Get(nil value) = %#v, %v; want a non-nil empty slice, nil", got, err)
	}
	if ok, err := c.Exists(bg, "empty"); err != nil || !ok {
		t.Fatalf("Exists(empty) = %v, %v; want true, nil", ok, err)
	}
}

func (s *suite) testLargeValue(t *testing.T) {
	c := s.cache(t)
	v := make([]byte, 512<<10)
	if _, err := rand.Read(v); err != nil {
		t.Fatal(err)
	}
	mustSet(t, c, "big", v, 0)
	wantValue(t, c, "big", v)
}

func (s *suite) testOverwrite(t *testing.T) {
	c := s.cache(t)
	mustSet(t, c, "k", []byte("first, and longer"), 0)
	mustSet(t, c, "k", []byte("second"), 0)
	wantValue(t, c, "k", []byte("second"))
}

func (s *suite) testDeleteCounts(t *testing.T) {
	c := s.cache(t)
	mustSet(t, c, "a", []byte("1"), 0)
	mustSet(t, c, "b", []byte("2"), 0)
	n, err := c.Delete(bg, "a", "b", "never-set")
	if err != nil || n != 2 {
		t.Fatalf("Delete(a, b, never-set) = %d, %v; want 2, nil", n, err)
	}
	wantMiss(t, c, "a")
	wantMiss(t, c, "b")
	n, err = c.Delete(bg)
	if err != nil || n != 0 {
		t.Fatalf("Delete() = %d, %v; want 0, nil", n, err)
	}
}

func (s *suite) testDeleteMissing(t *testing.T) {
	c := s.cache(t)
	n, err := c.Delete(bg, "missing")
	if err != nil || n != 0 {
		t.Fatalf("Delete(missing) = %d, %v; want 0, nil", n, err)
	}
}

func (s *suite) testSubSecondTTL(t *testing.T) {
	c := s.cache(t)
	mustSet(t, c, "short", []byte("v"), 300*time.Millisecond)
	// Rounding must go up, never to "forever" or to "already expired".
	wantValue(t, c, "short", []byte("v"))
	eventuallyMiss(t, c, "short")
	if ok, err := c.Exists(bg, "short"); err != nil || ok {
		t.Fatalf("Exists(expired) = %v, %v; want false, nil", ok, err)
	}
}

func (s *suite) testZeroTTL(t *testing.T) {
	c := s.cache(t)
	mustSet(t, c, "forever", []byte("v"), 0)
	mustSet(t, c, "short", []byte("v"), 200*time.Millisecond)
	eventuallyMiss(t, c, "short")
	time.Sleep(time.Second) // past any one-second resolution boundary
	wantValue(t, c, "forever", []byte("v"))
}

func (s *suite) testNegativeTTL(t *testing.T) {
	c := s.cache(t)
	wantErrIs(t, "Set with ttl -1s", c.Set(bg, "k", []byte("v"), -time.Second), cachekit.ErrInvalidTTL)
	wantErrIs(t, "SetMany with ttl -1ns", c.SetMany(bg, map[string][]byte{"k": []byte("v")}, -1), cachekit.ErrInvalidTTL)
	wantErrIs(t, "Add with ttl -1s", c.Add(bg, "k", []byte("v"), -time.Second), cachekit.ErrInvalidTTL)
	wantMiss(t, c, "k")
	mustSet(t, c, "k", []byte("v"), 0)
	_, err := c.Expire(bg, "k", -time.Second)
	wantErrIs(t, "Expire with ttl -1s", err, cachekit.ErrInvalidTTL)
	wantValue(t, c, "k", []byte("v"))
}

func (s *suite) testSetReplacesTTL(t *testing.T) {
	c := s.cache(t)
	mustSet(t, c, "k", []byte("v1"), 200*time.Millisecond)
	mustSet(t, c, "k", []byte("v2"), 0)
	mustSet(t, c, "probe", []byte("p"), 200*time.Millisecond)
	eventuallyMiss(t, c, "probe")
	time.Sleep(time.Second)
	wantValue(t, c, "k", []byte("v2"))
}

func (s *suite) testAdd(t *testing.T) {
	c := s.cache(t)
	if err := c.Add(bg, "k", []byte("first"), 0); err != nil {
		t.Fatalf("Add(absent key): %v", err)
	}
	wantErrIs(t, "Add(present key)", c.Add(bg, "k", []byte("second"), 0), cachekit.ErrExists)
	wantValue(t, c, "k", []byte("first"))

	// Of many concurrent Adds, exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.Add(bg, "race", []byte(strconv.Itoa(i)), 0)
			switch {
			case err == nil:
				mu.Lock()
				wins++
				mu.Unlock()
			case !errors.Is(err, cachekit.ErrExists):
				t.Errorf("concurrent Add: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d concurrent Adds succeeded; want exactly 1", wins)
	}
}

func (s *suite) testAddAfterExpiry(t *testing.T) {
	c := s.cache(t)
	if err := c.Add(bg, "k", []byte("old"), 200*time.Millisecond); err != nil {
		t.Fatalf("Add: %v", err)
	}
	eventuallyMiss(t, c, "k")
	if err := c.Add(bg, "k", []byte("new"), 0); err != nil {
		t.Fatalf("Add after the old value expired: %v", err)
	}
	wantValue(t, c, "k", []byte("new"))
}

func (s *suite) testIncrementMissing(t *testing.T) {
	c := s.cache(t)
	n, err := c.Increment(bg, "counter", 5)
	if err != nil || n != 5 {
		t.Fatalf("Increment(missing, 5) = %d, %v; want 5, nil", n, err)
	}
	n, err = c.Increment(bg, "counter", 0)
	if err != nil || n != 5 {
		t.Fatalf("Increment(counter, 0) = %d, %v; want 5, nil", n, err)
	}
	n, err = c.Increment(bg, "zero", 0)
	if err != nil || n != 0 {
		t.Fatalf("Increment(missing, 0) = %d, %v; want 0, nil", n, err)
	}
}

func (s *suite) testIncrementNegative(t *testing.T) {
	c := s.cache(t)
	n, err := c.Increment(bg, "c", -3)
	if err != nil || n != -3 {
		t.Fatalf("Increment(missing, -3) = %d, %v; want -3, nil", n, err)
	}
	mustSet(t, c, "d", []byte("10"), 0)
	n, err = c.Increment(bg, "d", -25)
	if err != nil || n != -15 {
		t.Fatalf("Increment(10, -25) = %d, %v; want -15, nil", n, err)
	}
	n, err = c.Increment(bg, "d", 20)
	if err != nil || n != 5 {
		t.Fatalf("Increment(-15, 20) = %d, %v; want 5, nil", n, err)
	}
}

func (s *suite) testIncrementDecimal(t *testing.T) {
	c := s.cache(t)
	mustSet(t, c, "n", []byte("41"), 0)
	if n, err := c.Increment(bg, "n", 1); err != nil || n != 42 {
		t.Fatalf("Increment(41, 1) = %d, %v; want 42, nil", n, err)
	}
	wantValue(t, c, "n", []byte("42"))
	if _, err := c.Increment(bg, "m", -7); err != nil {
		t.Fatal(err)
	}
	wantValue(t, c, "m", []byte("-7"))
}

func (s *suite) testIncrementNotInteger(t *testing.T) {
	c := s.cache(t)
	for _, v := range []string{"abc", "1.5", "", "12abc", "99999999999999999999"} {
		mustSet(t, c, "k", []byte(v), 0)
		_, err := c.Increment(bg, "k", 1)
		wantErrIs(t, fmt.Sprintf("Increment of %q", v), err, cachekit.ErrNotInteger)
		wantValue(t, c, "k", []byte(v))
	}
}

func (s *suite) testIncrementOverflow(t *testing.T) {
	c := s.cache(t)
	mustSet(t, c, "max", []byte(strconv.FormatInt(1<<63-1, 10)), 0)
	_, err := c.Increment(bg, "max", 1)
	wantErrIs(t, "Increment past MaxInt64", err, cachekit.ErrNotInteger)
	mustSet(t, c, "min", []byte(strconv.FormatInt(-1<<63, 10)), 0)
	_, err = c.Increment(bg, "min", -1)
	wantErrIs(t, "Increment past MinInt64", err, cachekit.ErrNotInteger)
}

func (s *suite) testIncrementKeepsTTL(t *testing.T) {
	c := s.cache(t)
	mustSet(t, c, "n", []byte("1"), 500*time.Millisecond)
	if n, err := c.Increment(bg, "n", 1); err != nil || n != 2 {
		t.Fatalf("Increment = %d, %v; want 2, nil", n, err)
	}
	eventuallyMiss(t, c, "n")
}

func (s *suite) testIncrementConcurrent(t *testing.T) {
	c := s.cache(t)
	const workers, each = 100, 10
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, err := c.Increment(bg, "n", 1); err != nil {
					t.Errorf("Increment: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	wantValue(t, c, "n", []byte(strconv.Itoa(workers*each)))
}

func (s *suite) testExpireMissing(t *testing.T) {
	c := s.cache(t)
	ok, err := c.Expire(bg, "missing", time.Second)
	if err != nil || ok {
		t.Fatalf("Expire(missing) = %v, %v; want false, nil", ok, err)
	}
	ok, err = c.Expire(bg, "missing", 0)
	if err != nil || ok {
		t.Fatalf("Expire(missing, 0) = %v, %v; want false, nil", ok, err)
	}
	wantMiss(t, c, "missing")
}

func (s *suite) testExpirePersists(t *testing.T) {
	c := s.cache(t)
	mustSet(t, c, "k", []byte("v"), 300*time.Millisecond)
	ok, err := c.Expire(bg, "k", 0)
	if err != nil || !ok {
		t.Fatalf("Expire(k, 0) = %v, %v; want true, nil", ok, err)
	}
	// A key that already has no expiry still exists: Expire reports true.
	ok, err = c.Expire(bg, "k", 0)
	if err != nil || !ok {
		t.Fatalf("Expire(persistent k, 0) = %v, %v; want true, nil", ok, err)
	}
	mustSet(t, c, "probe", []byte("p"), 300*time.Millisecond)
	eventuallyMiss(t, c, "probe")
	time.Sleep(time.Second)
	wantValue(t, c, "k", []byte("v"))
}

func (s *suite) testExpireShortens(t *testing.T) {
	c := s.cache(t)
	mustSet(t, c, "k", []byte("v"), 0)
	ok, err := c.Expire(bg, "k", 300*time.Millisecond)
	if err != nil || !ok {
		t.Fatalf("Expire(k, 300ms) = %v, %v; want true, nil", ok, err)
	}
	wantValue(t, c, "k", []byte("v"))
	eventuallyMiss(t, c, "k")
}

func (s *suite) testExists(t *testing.T) {
	c := s.cache(t)
	mustSet(t, c, "k", []byte("v"), 0)
	if ok, err := c.Exists(bg, "k"); err != nil || !ok {
		t.Fatalf("Exists(k) = %v, %v; want true, nil", ok, err)
	}
	if _, err := c.Delete(bg, "k"); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Exists(bg, "k"); err != nil || ok {
		t.Fatalf("Exists(deleted) = %v, %v; want false, nil", ok, err)
	}
}

func (s *suite) testGetMany(t *testing.T) {
	c := s.cache(t)
	items := map[string][]byte{}
	for i := range 50 {
		items["k"+strconv.Itoa(i)] = []byte("v" + strconv.Itoa(i))
	}
	if err := c.SetMany(bg, items, 0); err != nil {
		t.Fatalf("SetMany: %v", err)
	}
	keys := []string{"missing-1"}
	for k := range items {
		keys = append(keys, k)
	}
	keys = append(keys, "missing-2", "k0") // a duplicate is allowed
	got, err := c.GetMany(bg, keys)
	if err != nil {
		t.Fatalf("GetMany: %v", err)
	}
	if len(got) != len(items) {
		t.Fatalf("GetMany returned %d entries; want %d (hits only)", len(got), len(items))
	}
	for k, v := range items {
		if !bytes.Equal(got[k], v) {
			t.Fatalf("GetMany[%q] = %q; want %q", k, got[k], v)
		}
	}
	got, err = c.GetMany(bg, nil)
	if err != nil || len(got) != 0 {
		t.Fatalf("GetMany(nil) = %v, %v; want empty, nil", got, err)
	}
	got, err = c.GetMany(bg, []string{"nope"})
	if err != nil || len(got) != 0 {
		t.Fatalf("GetMany(all missing) = %v, %v; want empty, nil", got, err)
	}
	if err := c.SetMany(bg, nil, 0); err != nil {
		t.Fatalf("SetMany(nil): %v", err)
	}
}

func (s *suite) testSetManyTTL(t *testing.T) {
	c := s.cache(t)
	items := map[string][]byte{}
	keys := []string{}
	for i := range 20 {
		k := "k" + strconv.Itoa(i)
		items[k] = []byte("v")
		keys = append(keys, k)
	}
	if err := c.SetMany(bg, items, 400*time.Millisecond); err != nil {
		t.Fatalf("SetMany: %v", err)
	}
	got, err := c.GetMany(bg, keys)
	if err != nil || len(got) != len(keys) {
		t.Fatalf("GetMany right after SetMany = %d hits, %v; want %d", len(got), err, len(keys))
	}
	start := time.Now()
	for {
		got, err := c.GetMany(bg, keys)
		if err != nil {
			t.Fatalf("GetMany: %v", err)
		}
		if len(got) == 0 {
			return
		}
		if time.Since(start) > expiryWait {
			t.Fatalf("%d of %d keys outlived the TTL given to SetMany", len(got), len(keys))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func (s *suite) testClear(t *testing.T) {
	// A namespace holding glob characters must not match its neighbours
	// (a SCAN pattern built from "x*" would match "xb").
	base := s.namespace(t, "")
	a := s.cacheIn(t, base+"*")
	b := s.cacheIn(t, base+"b")
	c := s.cacheIn(t, base+"[b]")
	for _, x := range []cachekit.Cache{a, b, c} {
		mustSet(t, x, "shared-key", []byte("v"), 0)
		mustSet(t, x, "other", []byte("v"), 0)
	}
	twin := s.cacheIn(t, base+"*") // a second cache on a's namespace
	wantValue(t, twin, "shared-key", []byte("v"))
	if err := a.Clear(bg); err != nil {
		t.Fatalf("Clear: %v", err)
	}
	wantMiss(t, twin, "shared-key")
	wantMiss(t, a, "shared-key")
	wantMiss(t, a, "other")
	wantValue(t, b, "shared-key", []byte("v"))
	wantValue(t, c, "other", []byte("v"))
	// The cleared cache is still usable.
	mustSet(t, a, "after", []byte("v"), 0)
	wantValue(t, a, "after", []byte("v"))
	if err := c.Clear(bg); err != nil {
		t.Fatalf("Clear: %v", err)
	}
	wantValue(t, b, "other", []byte("v"))
	wantValue(t, a, "after", []byte("v"))
}

func (s *suite) testNamespaceIsolation(t *testing.T) {
	base := s.namespace(t, "")
	a := s.cacheIn(t, base+"a")
	b := s.cacheIn(t, base+"b")
	same := s.cacheIn(t, base+"a")
	mustSet(t, a, "k", []byte("from a"), 0)
	wantMiss(t, b, "k")
	wantValue(t, same, "k", []byte("from a"))
	if _, err := b.Delete(bg, "k"); err != nil {
		t.Fatal(err)
	}
	wantValue(t, a, "k", []byte("from a"))
}

// weirdKeys are keys a backend may be unable to hold as they are, and keys
// that look like what an encoding of them might produce.
func weirdKeys() []string {
	long := make([]byte, 300)
	for i := range long {
		long[i] = 'a' + byte(i%26)
	}
	long2 := append(append([]byte{}, long[:299]...), 'z') // differs in the last byte only
	return []string{
		" ", "a b", "a%20b", "a+b", "a_b", "line\nbreak", "cr\r\nlf", "tab\tkey",
		"nul\x00byte", "\x00", "\x7f", "\xff\xfe", "ünïcødé", "日本語", "emoji😀",
		string(long), string(long2), string(long) + " ",
		"YSBi", "b64:YSBi", "~YSBi", "_YSBi", "#a b", "%", "~", ":", "::", "a:b", "a:b:c",
		"*", "?", "[a]", "\\", "{tag}", "key with {hash} tag",
		"4c1b0ee0d4f6d3e8f5b7a6c2d9e1f0a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1d3e5",
		string(make([]byte, cachekit.MaxKeySize)),
	}
}

func (s *suite) testWeirdKeys(t *testing.T) {
	c := s.cache(t)
	keys := weirdKeys()
	for i, k := range keys {
		if err := c.Set(bg, k, []byte(strconv.Itoa(i)), 0); err != nil {
			t.Fatalf("Set(%q): %v", k, err)
		}
	}
	for i, k := range keys {
		wantValue(t, c, k, []byte(strconv.Itoa(i)))
	}
	got, err := c.GetMany(bg, keys)
	if err != nil {
		t.Fatalf("GetMany(weird keys): %v", err)
	}
	for i, k := range keys {
		if string(got[k]) != strconv.Itoa(i) {
			t.Fatalf("GetMany[%q] = %q; want %q", k, got[k], strconv.Itoa(i))
		}
	}
	k := keys[len(keys)-1]
	if n, err := c.Increment(bg, "weird counter\n", 2); err != nil || n != 2 {
		t.Fatalf("Increment(weird key) = %d, %v", n, err)
	}
	if ok, err := c.Exists(bg, k); err != nil || !ok {
		t.Fatalf("Exists(%d-byte key) = %v, %v", len(k), ok, err)
	}
	n, err := c.Delete(bg, keys...)
	if err != nil || n != len(keys) {
		t.Fatalf("Delete(weird keys) = %d, %v; want %d", n, err, len(keys))
	}
}

func (s *suite) testInvalidKeys(t *testing.T) {
	c := s.cache(t)
	tooLong := string(make([]byte, cachekit.MaxKeySize+1))
	for _, k := range []string{"", tooLong} {
		_, err := c.Get(bg, k)
		wantErrIs(t, fmt.Sprintf("Get(%d-byte key)", len(k)), err, cachekit.ErrInvalidKey)
		wantErrIs(t, "Set", c.Set(bg, k, []byte("v"), 0), cachekit.ErrInvalidKey)
		wantErrIs(t, "Add", c.Add(bg, k, []byte("v"), 0), cachekit.ErrInvalidKey)
		wantErrIs(t, "SetMany", c.SetMany(bg, map[string][]byte{"ok": []byte("v"), k: []byte("v")}, 0), cachekit.ErrInvalidKey)
		_, err = c.GetMany(bg, []string{"ok", k})
		wantErrIs(t, "GetMany", err, cachekit.ErrInvalidKey)
		_, err = c.Delete(bg, k)
		wantErrIs(t, "Delete", err, cachekit.ErrInvalidKey)
		_, err = c.Exists(bg, k)
		wantErrIs(t, "Exists", err, cachekit.ErrInvalidKey)
		_, err = c.Increment(bg, k, 1)
		wantErrIs(t, "Increment", err, cachekit.ErrInvalidKey)
		_, err = c.Expire(bg, k, 0)
		wantErrIs(t, "Expire", err, cachekit.ErrInvalidKey)
	}
	// A batch with one bad key stores nothing.
	wantMiss(t, c, "ok")
}

func (s *suite) testTooLarge(t *testing.T) {
	if s.opts.MaxValueSize <= 0 {
		t.Skip("Options.MaxValueSize not set: the backend declares no value size limit")
	}
	c := s.cache(t)
	big := make([]byte, s.opts.MaxValueSize+1)
	wantErrIs(t, "Set of MaxValueSize+1 bytes", c.Set(bg, "big", big, 0), cachekit.ErrTooLarge)
	wantErrIs(t, "Add of MaxValueSize+1 bytes", c.Add(bg, "big", big, 0), cachekit.ErrTooLarge)
	wantErrIs(t, "SetMany with a MaxValueSize+1 value", c.SetMany(bg, map[string][]byte{"big": big}, 0), cachekit.ErrTooLarge)
	wantMiss(t, c, "big")
	// The cache is still usable, and the limit itself fits.
	mustSet(t, c, "small", []byte("v"), 0)
	wantValue(t, c, "small", []byte("v"))
	mustSet(t, c, "max", big[:s.opts.MaxValueSize], 0)
	wantValue(t, c, "max", big[:s.opts.MaxValueSize])
}

func (s *suite) testNoAliasing(t *testing.T) {
	c := s.cache(t)
	v := []byte("original")
	mustSet(t, c, "k", v, 0)
	copy(v, "XXXXXXXX")
	wantValue(t, c, "k", []byte("original"))

	got, err := c.Get(bg, "k")
	if err != nil {
		t.Fatal(err)
	}
	copy(got, "YYYYYYYY")
	wantValue(t, c, "k", []byte("original"))

	items := map[string][]byte{"m": []byte("many")}
	if err := c.SetMany(bg, items, 0); err != nil {
		t.Fatal(err)
	}
	copy(items["m"], "XXXX")
	m, err := c.GetMany(bg, []string{"m"})
	if err != nil {
		t.Fatal(err)
	}
	copy(m["m"], "YYYY")
	wantValue(t, c, "m", []byte("many"))

	a := []byte("added")
	if err := c.Add(bg, "a", a, 0); err != nil {
		t.Fatal(err)
	}
	copy(a, "XXXXX")
	wantValue(t, c, "a", []byte("added"))
}

func (s *suite) testConcurrency(t *testing.T) {
	c := s.cache(t)
	const workers, ops = 8, 150
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ops {
				key := "k" + strconv.Itoa(i%10)
				var err error
				switch (w + i) % 6 {
				case 0:
					err = c.Set(bg, key, []byte(strconv.Itoa(i)), 0)
				case 1:
					_, err = c.Get(bg, key)
					if errors.Is(err, cachekit.ErrNotFound) {
						err = nil
					}
				case 2:
					_, err = c.Delete(bg, key)
				case 3:
					_, err = c.GetMany(bg, []string{key, "k1", "k2"})
				case 4:
					_, err = c.Increment(bg, "counter-"+strconv.Itoa(w), 1)
				case 5:
					err = c.Add(bg, key, []byte("a"), time.Minute)
					if errors.Is(err, cachekit.ErrExists) {
						err = nil
					}
				}
				if err != nil {
					t.Errorf("worker %d op %d: %v", w, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for w := range workers {
		// Each worker's own counter saw exactly its own increments.
		want := 0
		for i := range ops {
			if (w+i)%6 == 4 {
				want++
			}
		}
		wantValue(t, c, "counter-"+strconv.Itoa(w), []byte(strconv.Itoa(want)))
	}
}

// everyOp calls every Cache method that takes a context with ctx and
// returns the errors by method name.
func everyOp(ctx context.Context, c cachekit.Cache) map[string]error {
	errs := map[string]error{}
	_, errs["Get"] = c.Get(ctx, "k")
	_, errs["GetMany"] = c.GetMany(ctx, []string{"k", "j"})
	errs["Set"] = c.Set(ctx, "k", []byte("v"), 0)
	errs["SetMany"] = c.SetMany(ctx, map[string][]byte{"k": []byte("v"), "j": []byte("w")}, 0)
	errs["Add"] = c.Add(ctx, "new", []byte("v"), 0)
	_, errs["Delete"] = c.Delete(ctx, "k")
	_, errs["Exists"] = c.Exists(ctx, "k")
	_, errs["Increment"] = c.Increment(ctx, "n", 1)
	_, errs["Expire"] = c.Expire(ctx, "k", time.Second)
	errs["Clear"] = c.Clear(ctx)
	if cad, ok := c.(cachekit.CompareAndDeleter); ok {
		_, errs["CompareAndDelete"] = cad.CompareAndDelete(ctx, "k", []byte("v"))
	}
	if cas, ok := c.(cachekit.CompareAndSwapper); ok {
		_, errs["CompareAndSwap"] = cas.CompareAndSwap(ctx, "k", []byte("v"), []byte("w"), 0)
	}
	if sg, ok := c.(cachekit.SharedGetter); ok {
		_, errs["GetShared"] = sg.GetShared(ctx, "k")
	}
	if v, ok := c.(cachekit.Versioner); ok {
		_, _, errs["GetVersion"] = v.GetVersion(ctx, "k")
		_, errs["AddVersion"] = v.AddVersion(ctx, "new", []byte("v"), 0)
		_, _, errs["SwapVersion"] = v.SwapVersion(ctx, "k", 1, []byte("w"), 0)
		_, errs["DeleteVersion"] = v.DeleteVersion(ctx, "k", 1)
	}
	return errs
}

func (s *suite) testCancelled(t *testing.T) {
	c := s.cache(t)
	mustSet(t, c, "k", []byte("v"), 0)
	ctx, cancel := context.WithCancel(bg)
	cancel()
	for op, err := range everyOp(ctx, c) {
		wantErrIs(t, op+" with a cancelled context", err, context.Canceled)
	}
	// Nothing was changed, and the cache still works.
	wantValue(t, c, "k", []byte("v"))
	wantMiss(t, c, "new")
}

func (s *suite) testDeadline(t *testing.T) {
	c := s.cache(t)
	mustSet(t, c, "k", []byte("v"), 0)
	ctx, cancel := context.WithDeadline(bg, time.Now().Add(-time.Second))
	defer cancel()
	for op, err := range everyOp(ctx, c) {
		wantErrIs(t, op+" past its deadline", err, context.DeadlineExceeded)
	}
	wantValue(t, c, "k", []byte("v"))
}

func (s *suite) testClosed(t *testing.T) {
	c := s.newCache(t, s.namespace(t, ""))
	mustSet(t, c, "k", []byte("v"), 0)
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v; want nil (Close is idempotent)", err)
	}
	for op, err := range everyOp(bg, c) {
		wantErrIs(t, op+" after Close", err, cachekit.ErrClosed)
	}
}

func (s *suite) testErrorShape(t *testing.T) {
	c := s.cache(t)
	_, err := c.Get(bg, "missing key")
	var ce *cachekit.Error
	if !errors.As(err, &ce) {
		t.Fatalf("Get miss returned %T (%v); want a *cachekit.Error", err, err)
	}
	if ce.Op != "Get" || ce.Key != "missing key" {
		t.Fatalf("Get miss: Op=%q Key=%q; want Op=Get Key=%q", ce.Op, ce.Key, "missing key")
	}
	mustSet(t, c, "text", []byte("x"), 0)
	_, err = c.Increment(bg, "text", 1)
	if !errors.As(err, &ce) || ce.Op != "Increment" || ce.Key != "text" {
		t.Fatalf("Increment of text: %v; want a *cachekit.Error with Op=Increment Key=text", err)
	}
	err = c.Add(bg, "text", []byte("y"), 0)
	if !errors.As(err, &ce) || ce.Op != "Add" || ce.Key != "text" {
		t.Fatalf("Add of a present key: %v; want a *cachekit.Error with Op=Add Key=text", err)
	}
}

// nestingNamespaces are namespace suffixes that a naive key layout lets
// overlap: "a" with key "b:k" is "a:b" with key "k" under "ns:key", and
// "a*", "a?", "[a]", "a\" and the SQL wildcards are patterns, or escapes,
// in a SCAN MATCH or LIKE that a Clear may build from them.
var nestingNamespaces = []string{"a", "a:b", "a:", "a*", "a?", "[a]", `a\`, "a%", "a_", "ab", "a:b:c"}

// nestingKeys are keys that collide across nestingNamespaces under a naive
// layout: each namespace writes all of them.
var nestingKeys = []string{"k", "b:k", ":k", "b:c:k", "k*", "*", "b"}

// testNamespacesNeverNest checks that caches over one store whose
// namespaces nest or look like patterns are isolated both ways, for Get,
// GetMany and Clear.
func (s *suite) testNamespacesNeverNest(t *testing.T) {
	base := s.namespace(t, "-")
	caches := make([]cachekit.Cache, len(nestingNamespaces))
	items := make([]map[string][]byte, len(nestingNamespaces))
	for i, ns := range nestingNamespaces {
		caches[i] = s.cacheIn(t, base+ns)
		items[i] = map[string][]byte{}
		for _, k := range nestingKeys {
			items[i][k] = []byte(ns + "|" + k) // says whose value it is
		}
	}
	fill := func(i int) {
		t.Helper()
		for k, v := range items[i] {
			mustSet(t, caches[i], k, v, 0)
		}
	}
	for i := range caches {
		fill(i)
	}
	// check that every namespace holds its own values, and none where
	// cleared is.
	check := func(cleared int, useGet bool) {
		t.Helper()
		for i, c := range caches {
			what := fmt.Sprintf("namespace %q", nestingNamespaces[i])
			if cleared >= 0 {
				what += fmt.Sprintf(" after Clear on %q", nestingNamespaces[cleared])
			}
			if useGet {
				for _, k := range nestingKeys {
					got, err := c.Get(bg, k)
					switch {
					case i == cleared && !errors.Is(err, cachekit.ErrNotFound):
						t.Fatalf("%s: Get(%q) = %q, %v; want a miss", what, k, got, err)
					case i != cleared && (err != nil || !bytes.Equal(got, items[i][k])):
						t.Fatalf("%s: Get(%q) = %q, %v; want %q", what, k, got, err, items[i][k])
					}
				}
				continue
			}
			got, err := c.GetMany(bg, nestingKeys)
			if err != nil {
				t.Fatalf("%s: GetMany: %v", what, err)
			}
			if i == cleared {
				if len(got) != 0 {
					t.Fatalf("%s: GetMany found %d keys (%q...); want none", what, len(got), firstValue(got))
				}
				continue
			}
			for _, k := range nestingKeys {
				if !bytes.Equal(got[k], items[i][k]) {
					t.Fatalf("%s: GetMany[%q] = %q; want %q", what, k, got[k], items[i][k])
				}
			}
		}
	}
	check(-1, true)
	check(-1, false)
	for i, c := range caches {
		if err := c.Clear(bg); err != nil {
			t.Fatalf("Clear on %q: %v", nestingNamespaces[i], err)
		}
		check(i, false)
		fill(i) // so that the next Clear has this namespace's keys to spare
	}
	check(-1, true)
}

func firstValue(m map[string][]byte) []byte {
	for _, v := range m {
		return v
	}
	return nil
}

// testInvalidKeyErrorShape checks that a bad key is reported the same way
// on every backend: an *cachekit.Error naming the method, wrapping
// ErrInvalidKey.
func (s *suite) testInvalidKeyErrorShape(t *testing.T) {
	c := s.cache(t)
	for _, k := range []string{"", string(make([]byte, cachekit.MaxKeySize+1))} {
		errs := map[string]error{}
		_, errs["Get"] = c.Get(bg, k)
		_, errs["GetMany"] = c.GetMany(bg, []string{"ok", k})
		errs["Set"] = c.Set(bg, k, []byte("v"), 0)
		errs["SetMany"] = c.SetMany(bg, map[string][]byte{"ok": []byte("v"), k: []byte("v")}, 0)
		errs["Add"] = c.Add(bg, k, []byte("v"), 0)
		_, errs["Delete"] = c.Delete(bg, "ok", k)
		_, errs["Exists"] = c.Exists(bg, k)
		_, errs["Increment"] = c.Increment(bg, k, 1)
		_, errs["Expire"] = c.Expire(bg, k, time.Second)
		if cad, ok := c.(cachekit.CompareAndDeleter); ok {
			_, errs["CompareAndDelete"] = cad.CompareAndDelete(bg, k, []byte("v"))
		}
		if cas, ok := c.(cachekit.CompareAndSwapper); ok {
			_, errs["CompareAndSwap"] = cas.CompareAndSwap(bg, k, nil, []byte("v"), 0)
		}
		if sg, ok := c.(cachekit.SharedGetter); ok {
			_, errs["GetShared"] = sg.GetShared(bg, k)
		}
		for op, err := range errs {
			want := op
			if op == "GetShared" {
				want = "Get" // a Get without the copy (see cachekit.SharedGetter)
			}
			var ce *cachekit.Error
			if !errors.Is(err, cachekit.ErrInvalidKey) || !errors.As(err, &ce) || ce.Op != want {
				t.Errorf("%s with a %d-byte key: %T %v; want a *cachekit.Error with Op %q wrapping ErrInvalidKey", op, len(k), err, err, want)
			}
		}
	}
}

// compareAndDeleter returns c's CompareAndDelete, skipping or failing t
// when c has none, as Options say.
func (s *suite) compareAndDeleter(t *testing.T, c cachekit.Cache) cachekit.CompareAndDeleter {
	t.Helper()
	if cad, ok := c.(cachekit.CompareAndDeleter); ok {
		return cad
	}
	// A wrapper must not hide what it wraps, whatever the Options say.
	wantNotHidden[cachekit.CompareAndDeleter](t, c, "CompareAndDeleter")
	if s.opts.SkipCompareAndDelete {
		t.Skip("the cache does not implement cachekit.CompareAndDeleter (Options.SkipCompareAndDelete)")
	}
	t.Fatalf("%T does not implement cachekit.CompareAndDeleter (set Options.SkipCompareAndDelete if it need not)", c)
	return nil
}

func wantCAD(t *testing.T, cad cachekit.CompareAndDeleter, key string, old []byte, want bool) {
	t.Helper()
	got, err := cad.CompareAndDelete(bg, key, old)
	if err != nil || got != want {
		t.Fatalf("CompareAndDelete(%q, %q) = %v, %v; want %v, nil", key, abbrev(old), got, err, want)
	}
}

func (s *suite) testCompareAndDelete(t *testing.T) {
	base := s.namespace(t, "")
	c := s.cacheIn(t, base+"a")
	cad := s.compareAndDeleter(t, c)

	mustSet(t, c, "lease", []byte("token-1"), 0)
	wantCAD(t, cad, "lease", []byte("token-2"), false) // somebody else's token
	wantCAD(t, cad, "lease", []byte("token-"), false)  // a prefix is not the value
	wantCAD(t, cad, "lease", []byte("token-10"), false)
	wantCAD(t, cad, "lease", nil, false)
	wantValue(t, c, "lease", []byte("token-1"))
	wantCAD(t, cad, "lease", []byte("token-1"), true)
	wantMiss(t, c, "lease")
	wantCAD(t, cad, "lease", []byte("token-1"), false) // gone: nothing to delete
	wantCAD(t, cad, "never-set", []byte("x"), false)
	wantMiss(t, c, "never-set")

	// Binary and empty values compare as bytes; TTLs don't matter.
	bin := []byte{0, 1, 2, 0xff, '\r', '\n'}
	mustSet(t, c, "bin", bin, time.Hour)
	wantCAD(t, cad, "bin", bin[:5], false)
	wantCAD(t, cad, "bin", bin, true)
	wantMiss(t, c, "bin")
	mustSet(t, c, "empty", []byte{}, 0)
	wantCAD(t, cad, "empty", []byte("x"), false)
	wantCAD(t, cad, "empty", []byte{}, true)
	wantMiss(t, c, "empty")

	// Keys a backend may have to encode.
	for _, k := range []string{"a b", "line\nbreak", "日本語", string(make([]byte, 300))} {
		mustSet(t, c, k, []byte("v"), 0)
		wantCAD(t, cad, k, []byte("v"), true)
		wantMiss(t, c, k)
	}

	// Another namespace holding the same key and value is untouched.
	other := s.cacheIn(t, base+"b")
	mustSet(t, c, "shared", []byte("same"), 0)
	mustSet(t, other, "shared", []byte("same"), 0)
	wantCAD(t, cad, "shared", []byte("same"), true)
	wantValue(t, other, "shared", []byte("same"))
	if _, ok := other.(cachekit.CompareAndDeleter); !ok {
		t.Fatalf("a second cache from the same NewCacheFunc, %T, does not implement cachekit.CompareAndDeleter", other)
	}

	// Invalid keys, the caller's context, and a value larger than old.
	for _, k := range []string{"", string(make([]byte, cachekit.MaxKeySize+1))} {
		_, err := cad.CompareAndDelete(bg, k, []byte("v"))
		wantErrIs(t, fmt.Sprintf("CompareAndDelete(%d-byte key)", len(k)), err, cachekit.ErrInvalidKey)
	}
	mustSet(t, c, "k", []byte("v"), 0)
	ctx, cancel := context.WithCancel(bg)
	cancel()
	_, err := cad.CompareAndDelete(ctx, "k", []byte("v"))
	wantErrIs(t, "CompareAndDelete with a cancelled context", err, context.Canceled)
	wantValue(t, c, "k", []byte("v"))
}

// testCompareAndDeleteConcurrent: of many concurrent CompareAndDeletes of
// one value, exactly one deletes it, and a new value written meanwhile is
// never deleted by a CompareAndDelete of the old one.
func (s *suite) testCompareAndDeleteConcurrent(t *testing.T) {
	c := s.cache(t)
	cad := s.compareAndDeleter(t, c)
	for round := range 3 {
		key := "lock-" + strconv.Itoa(round)
		mustSet(t, c, key, []byte("owner"), 0)
		const n = 100
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := cad.CompareAndDelete(bg, key, []byte("owner"))
				if err != nil {
					t.Errorf("concurrent CompareAndDelete: %v", err)
					return
				}
				if ok {
					mu.Lock()
					wins++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("%d of %d concurrent CompareAndDeletes of one value reported true; want exactly 1", wins, n)
		}
		wantMiss(t, c, key)
	}

	// Racing a writer: a CompareAndDelete of "old" never deletes "new".
	for i := range 50 {
		key := "race-" + strconv.Itoa(i)
		mustSet(t, c, key, []byte("old"), 0)
		var wg sync.WaitGroup
		var deleted bool
		wg.Add(2)
		go func() {
			defer wg.Done()
			var err error
			if deleted, err = cad.CompareAndDelete(bg, key, []byte("old")); err != nil {
				t.Errorf("CompareAndDelete: %v", err)
			}
		}()
		go func() {
			defer wg.Done()
			if err := c.Set(bg, key, []byte("new"), 0); err != nil {
				t.Errorf("Set: %v", err)
			}
		}()
		wg.Wait()
		// Either order of the two leaves "new": CompareAndDelete first
		// deletes "old", Set first leaves nothing for it to delete.
		got, err := c.Get(bg, key)
		switch {
		case errors.Is(err, cachekit.ErrNotFound):
			t.Fatalf("%s: CompareAndDelete of %q (reported %v) deleted the newer value %q", key, "old", deleted, "new")
		case err != nil:
			t.Fatalf("Get(%s): %v", key, err)
		case string(got) != "new":
			t.Fatalf("Get(%s) = %q; want new", key, got)
		}
	}
}

func (s *suite) testCompareAndDeleteExpired(t *testing.T) {
	c := s.cache(t)
	cad := s.compareAndDeleter(t, c)
	mustSet(t, c, "k", []byte("v"), 200*time.Millisecond)
	eventuallyMiss(t, c, "k")
	wantCAD(t, cad, "k", []byte("v"), false) // an expired value is gone
	mustSet(t, c, "k", []byte("w"), 0)
	wantCAD(t, cad, "k", []byte("v"), false)
	wantValue(t, c, "k", []byte("w"))
}

// testUnnamespacedClear checks the cache with no namespace, as
// Options.UnnamespacedClear declares.
func (s *suite) testUnnamespacedClear(t *testing.T) {
	c := s.cacheIn(t, "")
	// Keys of this run only: the store may be a shared server.
	key := s.namespace(t, "-no-namespace")
	other := key + "-other"
	mustSet(t, c, key, []byte("v"), time.Minute)
	mustSet(t, c, other, []byte("w"), time.Minute)
	t.Cleanup(func() { _, _ = c.Delete(bg, key, other) })
	wantValue(t, c, key, []byte("v"))
	err := c.Clear(bg)
	switch s.opts.UnnamespacedClear {
	case UnnamespacedClearRemoves:
		if err != nil {
			t.Fatalf("Clear without a namespace: %v; want nil (Options.UnnamespacedClear is UnnamespacedClearRemoves)", err)
		}
		wantMiss(t, c, key)
		wantMiss(t, c, other)
		mustSet(t, c, key, []byte("after"), time.Minute) // still usable
		wantValue(t, c, key, []byte("after"))
	case UnnamespacedClearRefused:
		var ce *cachekit.Error
		if !errors.Is(err, cachekit.ErrFlushNotAllowed) || !errors.As(err, &ce) || ce.Op != "Clear" {
			t.Fatalf("Clear without a namespace: %T %v; want a *cachekit.Error with Op Clear wrapping ErrFlushNotAllowed (Options.UnnamespacedClear is UnnamespacedClearRefused)", err, err)
		}
		wantValue(t, c, key, []byte("v"))
		wantValue(t, c, other, []byte("w"))
	default:
		t.Fatalf("Options.UnnamespacedClear = %d: unknown", s.opts.UnnamespacedClear)
	}
}

// wantNotHidden fails t if c, which does not implement the optional
// interface I, wraps (through Unwrap() cachekit.Cache methods) a cache that
// does.
func wantNotHidden[I any](t *testing.T, c cachekit.Cache, name string) {
	t.Helper()
	inner := c
	for {
		u, ok := inner.(interface{ Unwrap() cachekit.Cache })
		if !ok {
			return
		}
		inner = u.Unwrap()
		if _, ok := inner.(I); ok {
			t.Fatalf("%T wraps a %T, which implements cachekit.%s, but does not implement it itself: a wrapper must forward optional interfaces", c, inner, name)
		}
	}
}

// compareAndSwapper returns c's CompareAndSwap, skipping or failing t when c
// has none, as Options say.
func (s *suite) compareAndSwapper(t *testing.T, c cachekit.Cache) cachekit.CompareAndSwapper {
	t.Helper()
	if cas, ok := c.(cachekit.CompareAndSwapper); ok {
		return cas
	}
	wantNotHidden[cachekit.CompareAndSwapper](t, c, "CompareAndSwapper")
	if s.opts.SkipCompareAndSwap {
		t.Skip("the cache does not implement cachekit.CompareAndSwapper (Options.SkipCompareAndSwap)")
	}
	t.Fatalf("%T does not implement cachekit.CompareAndSwapper (set Options.SkipCompareAndSwap if it need not)", c)
	return nil
}

func wantCAS(t *testing.T, cas cachekit.CompareAndSwapper, key string, old, new []byte, ttl time.Duration, want bool) {
	t.Helper()
	got, err := cas.CompareAndSwap(bg, key, old, new, ttl)
	if err != nil || got != want {
		oldS := "nil (absent)"
		if old != nil {
			oldS = strconv.Quote(string(abbrev(old)))
		}
		t.Fatalf("CompareAndSwap(%q, old %s, new %q) = %v, %v; want %v, nil", key, oldS, abbrev(new), got, err, want)
	}
}

func (s *suite) testCompareAndSwap(t *testing.T) {
	base := s.namespace(t, "")
	c := s.cacheIn(t, base+"a")
	cas := s.compareAndSwapper(t, c)

	// old nil: only while absent.
	wantCAS(t, cas, "k", nil, []byte("v1"), 0, true)
	wantValue(t, c, "k", []byte("v1"))
	wantCAS(t, cas, "k", nil, []byte("v2"), 0, false)
	wantValue(t, c, "k", []byte("v1"))

	// old given: only while it holds exactly old.
	wantCAS(t, cas, "k", []byte("v0"), []byte("v2"), 0, false)
	wantCAS(t, cas, "k", []byte("v"), []byte("v2"), 0, false) // a prefix is not the value
	wantCAS(t, cas, "k", []byte("v10"), []byte("v2"), 0, false)
	wantValue(t, c, "k", []byte("v1"))
	wantCAS(t, cas, "k", []byte("v1"), []byte("v2"), 0, true)
	wantValue(t, c, "k", []byte("v2"))
	wantCAS(t, cas, "missing", []byte("v2"), []byte("v3"), 0, false)
	wantMiss(t, c, "missing")

	// An empty value is present: old nil does not match it, old empty does.
	mustSet(t, c, "empty", []byte{}, 0)
	wantCAS(t, cas, "empty", nil, []byte("x"), 0, false)
	wantCAS(t, cas, "empty", []byte{}, []byte("x"), 0, true)
	wantValue(t, c, "empty", []byte("x"))
	wantCAS(t, cas, "empty", []byte("x"), []byte{}, 0, true)
	got, err := c.Get(bg, "empty")
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("Get after swapping in an empty value = %#v, %v; want a non-nil empty slice", got, err)
	}

	// Binary values and keys a backend may have to encode.
	bin := []byte{0, 1, 2, 0xff, '\r', '\n'}
	for _, k := range []string{"a b", "line\nbreak", "日本語", string(make([]byte, 300))} {
		mustSet(t, c, k, bin, 0)
		wantCAS(t, cas, k, bin[:5], []byte("no"), 0, false)
		wantCAS(t, cas, k, bin, []byte("yes"), 0, true)
		wantValue(t, c, k, []byte("yes"))
	}

	// Another namespace holding the same key and value is untouched.
	other := s.cacheIn(t, base+"b")
	mustSet(t, c, "shared", []byte("same"), 0)
	mustSet(t, other, "shared", []byte("same"), 0)
	wantCAS(t, cas, "shared", []byte("same"), []byte("changed"), 0, true)
	wantValue(t, other, "shared", []byte("same"))
	wantCAS(t, cas, "fresh", nil, []byte("a"), 0, true)
	wantMiss(t, other, "fresh")

	// The stored value is not the caller's slice.
	nv := []byte("mine")
	wantCAS(t, cas, "alias", nil, nv, 0, true)
	copy(nv, "XXXX")
	wantValue(t, c, "alias", []byte("mine"))

	// Invalid keys, negative TTLs, values too large, the caller's context.
	for _, k := range []string{"", string(make([]byte, cachekit.MaxKeySize+1))} {
		_, err := cas.CompareAndSwap(bg, k, nil, []byte("v"), 0)
		wantErrIs(t, fmt.Sprintf("CompareAndSwap(%d-byte key)", len(k)), err, cachekit.ErrInvalidKey)
	}
	_, err = cas.CompareAndSwap(bg, "k", []byte("v2"), []byte("v3"), -time.Second)
	wantErrIs(t, "CompareAndSwap with ttl -1s", err, cachekit.ErrInvalidTTL)
	wantValue(t, c, "k", []byte("v2"))
	if s.opts.MaxValueSize > 0 {
		_, err = cas.CompareAndSwap(bg, "k", []byte("v2"), make([]byte, s.opts.MaxValueSize+1), 0)
		wantErrIs(t, "CompareAndSwap of MaxValueSize+1 bytes", err, cachekit.ErrTooLarge)
		wantValue(t, c, "k", []byte("v2"))
	}
	ctx, cancel := context.WithCancel(bg)
	cancel()
	_, err = cas.CompareAndSwap(ctx, "k", []byte("v2"), []byte("v3"), 0)
	wantErrIs(t, "CompareAndSwap with a cancelled context", err, context.Canceled)
	wantValue(t, c, "k", []byte("v2"))
}

// oneWinner runs try(1) to try(100) concurrently and returns the i of the
// one that reported true, failing t unless exactly one did (what is the
// tries, for the message) or any failed.
func oneWinner(t *testing.T, what string, try func(i int) (bool, error)) int {
	t.Helper()
	const n = 100
	var wg sync.WaitGroup
	var mu sync.Mutex
	var winners []int
	for i := 1; i <= n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := try(i)
			if err != nil {
				t.Errorf("concurrent %s: %v", what, err)
				return
			}
			if ok {
				mu.Lock()
				winners = append(winners, i)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d of %d concurrent %s reported true; want exactly 1", len(winners), n, what)
	}
	return winners[0]
}

// testCompareAndSwapConcurrent: of concurrent swaps from one value exactly
// one wins, and increments made of reads and swaps, retried on conflict,
// lose none.
func (s *suite) testCompareAndSwapConcurrent(t *testing.T) {
	c := s.cache(t)
	cas := s.compareAndSwapper(t, c)
	for round, old := range [][]byte{nil, []byte("0")} {
		key := "race-" + strconv.Itoa(round)
		if old != nil {
			mustSet(t, c, key, old, 0)
		}
		winner := oneWinner(t, fmt.Sprintf("CompareAndSwaps from %q", old), func(i int) (bool, error) {
			return cas.CompareAndSwap(bg, key, old, []byte(strconv.Itoa(i)), 0)
		})
		wantValue(t, c, key, []byte(strconv.Itoa(winner)))
	}

	concurrentCount(t, c, "counter", func(int) (bool, error) {
		old, n, err := readCounter(c.Get(bg, "counter"))
		if err != nil {
			return false, err
		}
		return cas.CompareAndSwap(bg, "counter", old, []byte(strconv.Itoa(n+1)), 0)
	})
}

// concurrentCount has 8 workers add 1 to the decimal counter under key, 15
// times each, every increment by calls of attempt(worker) until one reports
// true (an attempt reads the counter and writes it plus one only if nobody
// wrote it in between). It fails t when an attempt fails, when an increment
// makes no progress in 1000 attempts, or when the counter does not end at
// 120: no increment may be lost.
func concurrentCount(t *testing.T, c cachekit.Cache, key string, attempt func(worker int) (bool, error)) {
	t.Helper()
	const workers, each = 8, 15
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				for tries := 0; ; tries++ {
					if tries > 1000 {
						t.Errorf("an increment made no progress in 1000 attempts")
						return
					}
					ok, err := attempt(w)
					if err != nil {
						t.Errorf("increment: %v", err)
						return
					}
					if ok {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	wantValue(t, c, key, []byte(strconv.Itoa(workers*each)))
}

// readCounter takes what a read of a decimal counter returned: the bytes
// read (nil when absent) and the number (0 when absent).
func readCounter(b []byte, err error) ([]byte, int, error) {
	switch {
	case errors.Is(err, cachekit.ErrNotFound):
		return nil, 0, nil
	case err != nil:
		return nil, 0, err
	}
	n, err := strconv.Atoi(string(b))
	if err != nil {
		return nil, 0, fmt.Errorf("counter holds %q", b)
	}
	return b, n, nil
}

// testCompareAndSwapTTL: a swap sets the TTL it is given, replacing the old
// one, and an expired value is absent.
func (s *suite) testCompareAndSwapTTL(t *testing.T) {
	c := s.cache(t)
	cas := s.compareAndSwapper(t, c)
	mustSet(t, c, "k", []byte("v1"), 0)
	wantCAS(t, cas, "k", []byte("v1"), []byte("v2"), 300*time.Millisecond, true)
	eventuallyMiss(t, c, "k")
	wantCAS(t, cas, "k", []byte("v2"), []byte("v3"), 0, false) // expired: gone
	wantCAS(t, cas, "k", nil, []byte("v3"), 0, true)           // and absent
	mustSet(t, c, "p", []byte("v1"), 1500*time.Millisecond)    // long enough to swap it in time on a loaded machine
	wantCAS(t, cas, "p", []byte("v1"), []byte("v2"), 0, true)  // 0: no expiry
	mustSet(t, c, "probe", []byte("x"), 1500*time.Millisecond) // set after p: expires after p would have
	eventuallyMiss(t, c, "probe")
	time.Sleep(time.Second) // past any one-second resolution boundary
	wantValue(t, c, "p", []byte("v2"))
	wantValue(t, c, "k", []byte("v3"))
}
