package memory_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
	"github.com/cachekit/cachekit/cachetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var bg = context.Background()

// TestConformance runs the suite on one storage shared by every namespace,
// as the suite asks: caches made for the same namespace see the same keys.
func TestConformance(t *testing.T) {
	const maxValue = 1 << 20
	root := memory.New(&memory.Options{MaxBytes: 64 << 20, MaxValueSize: maxValue})
	t.Cleanup(func() { root.Close() })
	cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
		return root.WithNamespace(ns)
	}, &cachetest.Options{MaxValueSize: maxValue, UnnamespacedClear: cachetest.UnnamespacedClearRemoves})
}

// TestConformanceDefaults runs the suite on caches made by New with the
// default options and one storage per namespace, except for the rules that
// need two caches on one storage.
func TestConformanceDefaults(t *testing.T) {
	var mu sync.Mutex
	roots := map[string]*memory.Cache{}
	cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
		mu.Lock()
		defer mu.Unlock()
		if r, ok := roots[ns]; ok {
			return r.WithNamespace(ns)
		}
		r := memory.New(&memory.Options{Namespace: ns})
		roots[ns] = r
		return r
	}, &cachetest.Options{MaxValueSize: memory.DefaultMaxBytes / 4})
}

func mustSet(t *testing.T, c cachekit.Cache, key string, v []byte, ttl time.Duration) {
	t.Helper()
	if err := c.Set(bg, key, v, ttl); err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
}

func wantMiss(t *testing.T, c cachekit.Cache, key string) {
	t.Helper()
	if v, err := c.Get(bg, key); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("Get(%q) = %q, %v; want ErrNotFound", key, v, err)
	}
}

func wantValue(t *testing.T, c cachekit.Cache, key, want string) {
	t.Helper()
	v, err := c.Get(bg, key)
	if err != nil || string(v) != want {
		t.Fatalf("Get(%q) = %q, %v; want %q", key, v, err, want)
	}
}

func newCache(t *testing.T, o *memory.Options) *memory.Cache {
	t.Helper()
	c := memory.New(o)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestEvictionKeepsBytesBounded(t *testing.T) {
	const maxBytes = 1 << 20
	c := newCache(t, &memory.Options{MaxBytes: maxBytes})
	v := make([]byte, 1000)
	for i := range 20000 {
		mustSet(t, c, "k"+strconv.Itoa(i), v, 0)
		if i%1000 == 999 {
			if w := memory.WeightedSize(c); w > maxBytes {
				t.Fatalf("after %d Sets the weight is %d; want at most %d", i+1, w, maxBytes)
			}
		}
	}
	n := memory.EntryCount(c)
	perEntry := 1024 + 8 + memory.EntryOverhead // the allocations of value and key
	if n > maxBytes/perEntry || n < maxBytes/perEntry/2 {
		t.Fatalf("%d entries of about %d bytes in %d bytes; want about %d", n, perEntry, maxBytes, maxBytes/perEntry)
	}
}

func TestMaxEntries(t *testing.T) {
	c := newCache(t, &memory.Options{MaxBytes: 1 << 30, MaxEntries: 100})
	for i := range 1000 {
		mustSet(t, c, "k"+strconv.Itoa(i), []byte("v"), 0)
	}
	if n := memory.EntryCount(c); n > 100 || n < 90 {
		t.Fatalf("%d entries; want at most 100 (and close to it)", n)
	}
	// When both are set, whichever binds first wins: 64 KiB of 1 KiB values
	// is far fewer than 1000 entries.
	c = newCache(t, &memory.Options{MaxBytes: 64 << 10, MaxEntries: 1000})
	v := make([]byte, 1024)
	for i := range 1000 {
		mustSet(t, c, "k"+strconv.Itoa(i), v, 0)
	}
	if w := memory.WeightedSize(c); w > 64<<10 {
		t.Fatalf("weight %d; want at most %d", w, 64<<10)
	}
	if n := memory.EntryCount(c); n > 64 {
		t.Fatalf("%d entries of over 1 KiB in 64 KiB", n)
	}
}

func TestLimits(t *testing.T) {
	for _, tc := range []struct {
		o          *memory.Options
		maxW       uint64
		minW       uint32
		maxV       int64
		namespaced string
	}{
		{nil, memory.DefaultMaxBytes, 0, memory.DefaultMaxBytes / 4, ""},
		{&memory.Options{MaxBytes: -5, MaxEntries: -1, MaxValueSize: -1}, memory.DefaultMaxBytes, 0, memory.DefaultMaxBytes / 4, ""},
		{&memory.Options{MaxBytes: 1 << 20, MaxValueSize: 1 << 10, Namespace: "ns"}, 1 << 20, 0, 1 << 10, "ns"},
		{&memory.Options{MaxBytes: 1000, MaxEntries: 3}, 1000, 334, 250, ""},
		// A MaxValueSize that cannot fit is lowered to what fits.
		// A value of n > 32 KiB bytes weighs n rounded up to 8 KiB pages.
		{&memory.Options{MaxBytes: 1 << 20, MaxValueSize: 1 << 30}, 1 << 20, 0, 127 * 8192, ""},
		{&memory.Options{MaxBytes: 1000, MaxValueSize: 1 << 30}, 1000, 0, 768, ""}, // a size class
		{&memory.Options{MaxBytes: 100}, 100, 0, 0, ""},
		// Weights are uint32: a per-entry share that does not fit lowers
		// the total instead.
		{&memory.Options{MaxBytes: 1 << 40, MaxEntries: 2}, 2 * (1<<32 - 1), 1<<32 - 1, 2 * (1<<32 - 1) / 4, ""},
		{&memory.Options{MaxBytes: 1 << 40, MaxValueSize: 1 << 40}, 1 << 40, 0, (1<<32 - 1 - 2*cachekit.MaxKeySize - memory.EntryOverhead - 8) &^ 8191, ""},
	} {
		c := newCache(t, tc.o)
		maxW, minW, maxV, ns := memory.Limits(c)
		if maxW != tc.maxW || minW != tc.minW || maxV != tc.maxV || ns != tc.namespaced {
			t.Errorf("New(%+v): weight %d, min %d, value %d, ns %q; want %d, %d, %d, %q",
				tc.o, maxW, minW, maxV, ns, tc.maxW, tc.minW, tc.maxV, tc.namespaced)
		}
	}
}

func TestTooLarge(t *testing.T) {
	c := newCache(t, &memory.Options{MaxBytes: 1 << 20})
	limit := (1 << 20) / 4
	mustSet(t, c, "max", make([]byte, limit), 0)
	err := c.Set(bg, "big", make([]byte, limit+1), 0)
	if !errors.Is(err, cachekit.ErrTooLarge) {
		t.Fatalf("Set of MaxBytes/4+1 bytes: %v; want ErrTooLarge", err)
	}
	var ce *cachekit.Error
	if !errors.As(err, &ce) || ce.Op != "Set" || ce.Key != "big" {
		t.Fatalf("error %#v; want *cachekit.Error{Op: Set, Key: big}", err)
	}
	// A cache too small for any entry rejects every value instead of
	// storing it and evicting it at once.
	tiny := newCache(t, &memory.Options{MaxBytes: 100})
	if err := tiny.Set(bg, "k", nil, 0); !errors.Is(err, cachekit.ErrTooLarge) {
		t.Fatalf("Set into a 100-byte cache: %v; want ErrTooLarge", err)
	}
}

func TestTTLMillisecondAccuracy(t *testing.T) {
	c := newCache(t, nil)
	start := time.Now()
	mustSet(t, c, "k", []byte("v"), 30*time.Millisecond)
	v, err := c.Get(bg, "k")
	if elapsed := time.Since(start); elapsed < 30*time.Millisecond && (err != nil || string(v) != "v") {
		t.Fatalf("Get %v after a Set with a 30ms TTL = %q, %v; want a hit", elapsed, v, err)
	}
	time.Sleep(60*time.Millisecond - time.Since(start))
	wantMiss(t, c, "k")
	if ok, err := c.Exists(bg, "k"); ok || err != nil {
		t.Fatalf("Exists after the TTL = %v, %v; want false, nil", ok, err)
	}
	if n, err := c.Delete(bg, "k"); n != 0 || err != nil {
		t.Fatalf("Delete after the TTL = %d, %v; want 0, nil", n, err)
	}
}

// TestTTLNanosecondResolution: the deadline is not rounded to a coarser
// unit (as Redis's milliseconds or memcached's seconds are): an entry with
// a 1ns TTL has expired by the next call.
func TestTTLNanosecondResolution(t *testing.T) {
	c := newCache(t, nil)
	mustSet(t, c, "k", []byte("v"), time.Nanosecond)
	wantMiss(t, c, "k")
}

// TestExpiryCheckedOnRead moves the cache's clock but not the engine's, so
// the engine still holds the entries when the cache must treat them as gone.
func TestExpiryCheckedOnRead(t *testing.T) {
	c := newCache(t, nil)
	mustSet(t, c, "get", []byte("v"), time.Hour)
	mustSet(t, c, "add", []byte("old"), time.Hour)
	mustSet(t, c, "incr", []byte("41"), time.Hour)
	mustSet(t, c, "expire", []byte("v"), time.Hour)
	mustSet(t, c, "delete", []byte("v"), time.Hour)
	mustSet(t, c, "forever", []byte("v"), 0)
	memory.Freeze(c)
	memory.Advance(c, 2*time.Hour)
	if !memory.Held(c, "get") {
		t.Fatal("the engine dropped the entry; the test needs it held")
	}
	wantMiss(t, c, "get")
	if ok, _ := c.Exists(bg, "get"); ok {
		t.Fatal("Exists(expired) = true")
	}
	if m, _ := c.GetMany(bg, []string{"get", "forever"}); len(m) != 1 {
		t.Fatalf("GetMany = %q; want only forever", m)
	}
	if err := c.Add(bg, "add", []byte("new"), 0); err != nil {
		t.Fatalf("Add over an expired entry: %v", err)
	}
	wantValue(t, c, "add", "new")
	if n, err := c.Increment(bg, "incr", 1); n != 1 || err != nil {
		t.Fatalf("Increment of an expired 41 = %d, %v; want 1 (a fresh counter)", n, err)
	}
	if ok, err := c.Expire(bg, "expire", 0); ok || err != nil {
		t.Fatalf("Expire of an expired entry = %v, %v; want false, nil", ok, err)
	}
	wantMiss(t, c, "expire")
	if n, err := c.Delete(bg, "delete", "forever"); n != 1 || err != nil {
		t.Fatalf("Delete(expired, live) = %d, %v; want 1, nil", n, err)
	}
}

func TestIncrementKeepsDeadline(t *testing.T) {
	c := newCache(t, nil)
	mustSet(t, c, "n", []byte("1"), time.Hour)
	if _, err := c.Increment(bg, "n", 1); err != nil {
		t.Fatal(err)
	}
	memory.Freeze(c)
	memory.Advance(c, 2*time.Hour)
	wantMiss(t, c, "n")

	if _, err := c.Increment(bg, "fresh", 1); err != nil {
		t.Fatal(err)
	}
	memory.Advance(c, 1000*time.Hour)
	wantValue(t, c, "fresh", "1")
}

func TestIncrementParsing(t *testing.T) {
	c := newCache(t, nil)
	for v, want := range map[string]int64{"0": 1, "-5": -4, "9223372036854775806": 9223372036854775807, "007": 8} {
		mustSet(t, c, "k", []byte(v), 0)
		if n, err := c.Increment(bg, "k", 1); n != want || err != nil {
			t.Errorf("Increment(%q, 1) = %d, %v; want %d", v, n, err, want)
		}
	}
	for _, v := range []string{"+5", " 5", "5 ", "0x10", "1e3", "-"} {
		mustSet(t, c, "k", []byte(v), 0)
		if _, err := c.Increment(bg, "k", 1); !errors.Is(err, cachekit.ErrNotInteger) {
			t.Errorf("Increment(%q) = %v; want ErrNotInteger", v, err)
		}
		wantValue(t, c, "k", v)
	}
}

func TestNoAliasing(t *testing.T) {
	c := newCache(t, nil)
	v := []byte("abc")
	mustSet(t, c, "k", v, 0)
	v[0] = 'X'
	got, _ := c.Get(bg, "k")
	got[1] = 'Y'
	again, _ := c.Get(bg, "k")
	if string(again) != "abc" {
		t.Fatalf("stored value changed to %q", again)
	}
	if &got[0] == &again[0] {
		t.Fatal("two Gets returned the same array")
	}
}

func TestGetAllocatesOnlyTheCopy(t *testing.T) {
	c := newCache(t, nil)
	mustSet(t, c, "key", bytes.Repeat([]byte("x"), 100), 0)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := c.Get(bg, "key"); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 1 {
		t.Fatalf("Get hit: %v allocations; want 1 (the copy)", allocs)
	}
}

func TestWithNamespace(t *testing.T) {
	root := newCache(t, &memory.Options{MaxBytes: 1 << 20})
	a := root.WithNamespace("a")
	b := root.WithNamespace("b")
	a2 := root.WithNamespace("a")
	mustSet(t, root, "k", []byte("root"), 0)
	mustSet(t, a, "k", []byte("a"), 0)
	mustSet(t, b, "k", []byte("b"), 0)
	wantValue(t, a2, "k", "a")
	wantValue(t, root, "k", "root")

	// Clear on the root (no namespace) removes the root's keys only.
	if err := root.Clear(bg); err != nil {
		t.Fatal(err)
	}
	wantMiss(t, root, "k")
	wantValue(t, a, "k", "a")
	if err := a2.Clear(bg); err != nil {
		t.Fatal(err)
	}
	wantMiss(t, a, "k")
	wantValue(t, b, "k", "b")

	// Closing a view leaves the storage and the other views open.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Get(bg, "k"); !errors.Is(err, cachekit.ErrClosed) {
		t.Fatalf("Get on a closed view: %v; want ErrClosed", err)
	}
	wantValue(t, b, "k", "b")
	mustSet(t, a2, "k", []byte("a2"), 0)

	// Closing the root closes every view.
	if err := root.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*memory.Cache{root, b, a2, root.WithNamespace("new")} {
		if _, err := c.Get(bg, "k"); !errors.Is(err, cachekit.ErrClosed) {
			t.Fatalf("Get after the root's Close: %v; want ErrClosed", err)
		}
	}
}

func TestSharedBudget(t *testing.T) {
	root := newCache(t, &memory.Options{MaxBytes: 256 << 10})
	v := make([]byte, 1000)
	for i := range 100 {
		ns := root.WithNamespace("ns" + strconv.Itoa(i%10))
		mustSet(t, ns, strconv.Itoa(i), v, 0)
		mustSet(t, ns, "more"+strconv.Itoa(i), v, 0)
		mustSet(t, ns, "evenmore"+strconv.Itoa(i), v, 0)
	}
	if w := memory.WeightedSize(root); w > 256<<10 {
		t.Fatalf("weight %d over the shared MaxBytes", w)
	}
}

func TestClose(t *testing.T) {
	c := memory.New(nil)
	mustSet(t, c, "k", []byte("v"), time.Minute)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	errs := []error{c.Set(bg, "k", nil, 0), c.Clear(bg), c.SetMany(bg, nil, 0), c.Add(bg, "k", nil, 0)}
	_, err := c.Get(bg, "k")
	errs = append(errs, err)
	_, err = c.GetMany(bg, nil)
	errs = append(errs, err)
	_, err = c.Delete(bg)
	errs = append(errs, err)
	_, err = c.Exists(bg, "k")
	errs = append(errs, err)
	_, err = c.Increment(bg, "k", 1)
	errs = append(errs, err)
	_, err = c.Expire(bg, "k", 0)
	errs = append(errs, err)
	for i, err := range errs {
		if !errors.Is(err, cachekit.ErrClosed) {
			t.Errorf("call %d after Close: %v; want ErrClosed", i, err)
		}
	}
	// goleak in TestMain checks that Close stopped the engine's goroutine.
}

func TestOpenURL(t *testing.T) {
	for _, scheme := range []string{"mem", "memory", "MEM"} {
		u := scheme + "://?max_bytes=1MiB&max_entries=10&max_value_size=1KiB&namespace=app"
		c, err := cachekit.Open(bg, u)
		if err != nil {
			t.Fatalf("Open(%q): %v", u, err)
		}
		mc, ok := c.(*memory.Cache)
		if !ok {
			t.Fatalf("Open(%q) returned %T", u, c)
		}
		maxW, minW, maxV, ns := memory.Limits(mc)
		if maxW != 1<<20 || minW != (1<<20+9)/10 || maxV != 1024 || ns != "app" {
			t.Errorf("Open(%q): weight %d, min %d, value %d, ns %q", u, maxW, minW, maxV, ns)
		}
		mustSet(t, c, "k", []byte("v"), 0)
		wantValue(t, c, "k", "v")
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	c, err := cachekit.Open(bg, "mem://")
	if err != nil {
		t.Fatal(err)
	}
	if maxW, _, _, _ := memory.Limits(c.(*memory.Cache)); maxW != memory.DefaultMaxBytes {
		t.Errorf("mem:// max weight %d; want the default", maxW)
	}
	c.Close()

	for _, u := range []string{
		"mem://?max_bytes=lots",
		"mem://?max_entries=-1",
		"mem://?maxbytes=1MiB",
		"mem://?namespace=a&namespace=b",
		"mem://host",
		"mem:///path",
		"mem://user:secret@",
		"mem:opaque",
	} {
		c, err := cachekit.Open(bg, u)
		if !errors.Is(err, cachekit.ErrInvalidURL) {
			if c != nil {
				c.Close()
			}
			t.Errorf("Open(%q) = %v; want ErrInvalidURL", u, err)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	c := newCache(t, &memory.Options{MaxBytes: 1 << 20})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				k := strconv.Itoa(i % 50)
				switch (w + i) % 5 {
				case 0:
					_ = c.Set(bg, k, []byte(fmt.Sprint(i)), time.Millisecond*time.Duration(i%3))
				case 1:
					_, _ = c.Get(bg, k)
				case 2:
					_, _ = c.Increment(bg, "n", 1)
				case 3:
					_, _ = c.Expire(bg, k, time.Millisecond)
				case 4:
					_ = c.Add(bg, k, []byte("a"), 0)
				}
			}
		}()
	}
	wg.Wait()
	v, err := c.Get(bg, "n")
	if err != nil || string(v) != strconv.Itoa(8*2000/5) {
		t.Fatalf("counter = %q, %v; want %d", v, err, 8*2000/5)
	}
}

// TestNamespaceKeysNeverCollide stores keys that look like the engine's
// encoding of other namespaces' keys.
func TestNamespaceKeysNeverCollide(t *testing.T) {
	root := newCache(t, &memory.Options{Namespace: "app"})
	same := root.WithNamespace("app")
	a := root.WithNamespace("a")
	empty := root.WithNamespace("")
	ab := root.WithNamespace("a\x01b")
	caches := []*memory.Cache{root, a, empty, ab}
	keys := []string{
		"k", "\x00", "\x00p", "\x00n", "\x00pk", memory.EngineKey(a, "k"), memory.EngineKey(empty, "k"),
		memory.EngineKey(root, "\x00k"), memory.EngineKey(ab, "k"), "\x00n\x01ak", "\x00n\x03a\x01bk",
	}
	for i, c := range caches {
		for _, k := range keys {
			mustSet(t, c, k, []byte(strconv.Itoa(i)), 0)
		}
	}
	for i, c := range caches {
		for _, k := range keys {
			wantValue(t, c, k, strconv.Itoa(i))
		}
	}
	for _, k := range keys {
		wantValue(t, same, k, "0")
	}
	// Clear in one namespace leaves exactly the others.
	if err := a.Clear(bg); err != nil {
		t.Fatal(err)
	}
	if err := root.Clear(bg); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		wantMiss(t, a, k)
		wantMiss(t, root, k)
		wantValue(t, empty, k, "2")
		wantValue(t, ab, k, "3")
	}
}

// TestExpiredEntriesAreRemoved checks that the storage frees expired entries
// that nobody reads or overwrites.
func TestExpiredEntriesAreRemoved(t *testing.T) {
	c := newCache(t, nil)
	for i := range 100 {
		mustSet(t, c, strconv.Itoa(i), make([]byte, 100), 20*time.Millisecond)
	}
	mustSet(t, c, "forever", []byte("v"), 0)
	deadline := time.Now().Add(10 * time.Second)
	for memory.EntryCount(c) > 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d entries 10s after their TTL of 20ms; want 1", memory.EntryCount(c))
		}
		time.Sleep(100 * time.Millisecond)
	}
	wantValue(t, c, "forever", "v")
}

// TestUnclosedCacheDoesNotLeak drops a cache without closing it: its
// clean-up goroutine must notice and return.
func TestUnclosedCacheDoesNotLeak(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	func() {
		c := memory.New(nil)
		mustSet(t, c, "k", []byte("v"), time.Millisecond)
		mustSet(t, c.WithNamespace("other"), "k", []byte("v"), 0)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		err := goleak.Find(ignore)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the goroutine of a dropped cache still runs: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
