package stats_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
	"github.com/cachekit/cachekit/cachetest"
	"github.com/cachekit/cachekit/plugin/stats"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var bg = context.Background()

func TestConformance(t *testing.T) {
	const maxValue = 1 << 20
	root := memory.New(&memory.Options{MaxBytes: 64 << 20, MaxValueSize: maxValue})
	t.Cleanup(func() { root.Close() })
	st := stats.New(nil)
	cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
		return cachekit.WithHooks(root.WithNamespace(ns), st)
	}, &cachetest.Options{MaxValueSize: maxValue})
	t.Cleanup(func() {
		s := st.Snapshot()
		if s.Ops == 0 || s.Hits == 0 || s.Misses == 0 || s.Errors == 0 {
			t.Errorf("after the suite: %+v", s)
		}
	})
}

// script runs the same sequence of operations as the integration test
// against a real server, on c, and returns the snapshot it must produce.
func script(t *testing.T, c cachekit.Cache) stats.Snapshot {
	t.Helper()
	ctx := bg
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Set(ctx, "a", []byte("1"), 0))
	must(c.Set(ctx, "b", []byte("two"), time.Minute))
	must(c.Set(ctx, "s", []byte("text"), 0))
	_, _ = c.Get(ctx, "a")                              // hit
	_, _ = c.Get(ctx, "b")                              // hit
	_, _ = c.Get(ctx, "c")                              // miss
	_, _ = c.GetMany(ctx, []string{"a", "b", "c", "d"}) // 2 hits, 2 misses
	must(c.SetMany(ctx, map[string][]byte{"e": []byte("5"), "f": []byte("6")}, time.Hour))
	_ = c.Add(ctx, "a", []byte("x"), 0) // exists: not an error
	must(c.Add(ctx, "g", []byte("7"), 0))
	_, _ = c.Exists(ctx, "a")         // hit
	_, _ = c.Exists(ctx, "z")         // miss
	_, _ = c.Increment(ctx, "n", 1)   // 1
	_, _ = c.Increment(ctx, "n", 2)   // 3
	_, _ = c.Increment(ctx, "s", 1)   // error: not an integer
	_, _ = c.Expire(ctx, "a", 0)      // true
	_, _ = c.Expire(ctx, "z", 0)      // false
	_, _ = c.Delete(ctx, "a", "z")    // 1
	_, _ = c.Get(ctx, "")             // error: invalid key
	_ = c.Set(ctx, "k", nil, -1)      // error: negative TTL
	must(c.Clear(ctx))                // empties the namespace
	_, _ = c.Get(ctx, "b")            // miss
	_, _ = c.GetMany(ctx, []string{}) // nothing

	return stats.Snapshot{
		Ops: 23, Hits: 5, Misses: 5, HitRatio: 0.5, Errors: 3,
		Get:       stats.OpStats{Count: 5, Hits: 2, Misses: 2, Errors: 1},
		GetMany:   stats.OpStats{Count: 2, Hits: 2, Misses: 2},
		Set:       stats.OpStats{Count: 4, Errors: 1},
		SetMany:   stats.OpStats{Count: 1},
		Add:       stats.OpStats{Count: 2},
		Delete:    stats.OpStats{Count: 1},
		Exists:    stats.OpStats{Count: 2, Hits: 1, Misses: 1},
		Increment: stats.OpStats{Count: 3, Errors: 1},
		Expire:    stats.OpStats{Count: 2},
		Clear:     stats.OpStats{Count: 1},
	}
}

// withoutLatency zeroes the percentiles, which vary from run to run.
func withoutLatency(s stats.Snapshot) stats.Snapshot {
	for _, p := range []*stats.OpStats{&s.Get, &s.GetMany, &s.Set, &s.SetMany, &s.Add, &s.Delete, &s.Exists, &s.Increment, &s.Expire, &s.Clear} {
		p.P50, p.P99 = 0, 0
	}
	return s
}

func TestScriptedSequence(t *testing.T) {
	for _, every := range []int{0, 1, 3} {
		st := stats.New(&stats.Options{TimeEvery: every})
		m := memory.New(nil)
		c := cachekit.WithHooks(m, st)
		want := script(t, c)
		got := st.Snapshot()
		if withoutLatency(got) != want {
			t.Errorf("TimeEvery %d:\n got %+v\nwant %+v", every, got, want)
		}
		// Every kind was called at least once, and its first call timed.
		var sum time.Duration
		for k := range cachekit.NumOpKinds {
			o := got.ByKind(cachekit.OpKind(k))
			if o.P99 < o.P50 {
				t.Errorf("TimeEvery %d: %v: P50 %v, P99 %v", every, cachekit.OpKind(k), o.P50, o.P99)
			}
			sum += o.P50
		}
		if sum <= 0 {
			t.Errorf("TimeEvery %d: no latency recorded: %+v", every, got)
		}
		st.Reset()
		if got := st.Snapshot(); got != (stats.Snapshot{}) {
			t.Errorf("after Reset: %+v", got)
		}
		_ = c.Close()
	}
}

// TestEvents counts the events of Typed.GetOrLoad over a hooked cache: a
// miss and a load, a hit, a load error, concurrent callers joining one load,
// and a value that does not decode.
func TestEvents(t *testing.T) {
	st := stats.New(nil)
	m := memory.New(nil)
	defer m.Close()
	typed := cachekit.NewTyped[string](cachekit.WithHooks(m, st), nil)
	load := func(v string) func(context.Context) (string, error) {
		return func(context.Context) (string, error) { return v, nil }
	}

	// A miss: Get misses, the loader runs, Set stores.
	if v, err := typed.GetOrLoad(bg, "k1", load("one")); err != nil || v != "one" {
		t.Fatalf("GetOrLoad(k1) = %q, %v", v, err)
	}
	typed.Wait() // GetOrLoad writes in the background
	// A hit.
	if v, err := typed.GetOrLoad(bg, "k1", load("other")); err != nil || v != "one" {
		t.Fatalf("GetOrLoad(k1) again = %q, %v", v, err)
	}
	// A load error: nothing is stored.
	boom := errors.New("boom")
	if _, err := typed.GetOrLoad(bg, "k2", func(context.Context) (string, error) { return "", boom }); !errors.Is(err, boom) {
		t.Fatalf("GetOrLoad(k2) = %v, want boom", err)
	}

	// A stampede: four callers, one load, three joins.
	const callers = 4
	release := make(chan struct{})
	var wg sync.WaitGroup
	results := make(chan string, callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := typed.GetOrLoad(bg, "k3", func(context.Context) (string, error) {
				<-release
				return "three", nil
			})
			if err != nil {
				t.Error(err)
			}
			results <- v
		}()
	}
	waitInFlight(t, callers)
	close(release)
	wg.Wait()
	close(results)
	for v := range results {
		if v != "three" {
			t.Errorf("a caller got %q", v)
		}
	}

	// A value that does not decode: the Get fails to decode, GetOrLoad
	// loads again and overwrites it.
	if err := m.Set(bg, "k4", []byte("{not json"), 0); err != nil {
		t.Fatal(err)
	}
	if v, err := typed.GetOrLoad(bg, "k4", load("four")); err != nil || v != "four" {
		t.Fatalf("GetOrLoad(k4) = %q, %v", v, err)
	}

	typed.Wait() // the background writes of k3 and k4
	got := withoutLatency(st.Snapshot())
	want := stats.Snapshot{
		// Gets: k1 miss, k1 hit, k2 miss, 4 × k3 miss, k4 hit for the
		// cache (it found the value) but a miss in the totals (the value
		// did not decode: the reader had to load it).
		// Sets: k1, k3, k4 (the loads that succeeded).
		Ops: 11, Hits: 1, Misses: 7, HitRatio: 0.125,
		Get:           stats.OpStats{Count: 8, Hits: 2, Misses: 6},
		Set:           stats.OpStats{Count: 3},
		Loads:         3,
		LoadErrors:    1,
		StampedeJoins: callers - 1,
		DecodeErrors:  1,
	}
	if got != want {
		t.Errorf("\n got %+v\nwant %+v", got, want)
	}

	// Events of kinds stats does not know, and the kinds Typed does not
	// report yet, are counted too.
	c := cachekit.WithHooks(m, st)
	cachekit.Emit(bg, c, cachekit.Event{Kind: cachekit.EventStaleServed})
	cachekit.Emit(bg, c, cachekit.Event{Kind: cachekit.EventEarlyRefresh})
	cachekit.Emit(bg, c, cachekit.Event{Kind: "custom"})
	if s := st.Snapshot(); s.StaleServed != 1 || s.EarlyRefreshes != 1 || s.OtherEvents != 1 {
		t.Errorf("stale %d, early %d, other %d; want 1 each", s.StaleServed, s.EarlyRefreshes, s.OtherEvents)
	}
}

// waitInFlight waits until n goroutines are waiting inside the single-flight
// group for a load: the first caller, which started it, and the n-1 that
// joined it.
func waitInFlight(t *testing.T, n int) {
	t.Helper()
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := string(buf[:runtime.Stack(buf, true)])
		if got := strings.Count(st, "internal/flight.(*Group[...]).Do("); got >= n {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("%d callers waiting for the load, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestConcurrent(t *testing.T) {
	st := stats.New(nil)
	m := memory.New(nil)
	defer m.Close()
	c := cachekit.WithHooks(m, st)
	_ = m.Set(bg, "hit", []byte("v"), 0)
	const workers, each = 8, 2000
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if i%4 == 0 {
					_, _ = c.Get(bg, "miss")
				} else {
					_, _ = c.Get(bg, "hit")
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // snapshots while counting
		defer wg.Done()
		for range 100 {
			_ = st.Snapshot()
		}
	}()
	wg.Wait()
	s := st.Snapshot()
	if s.Get.Count != workers*each || s.Get.Hits != workers*each*3/4 || s.Get.Misses != workers*each/4 {
		t.Errorf("Get = %+v", s.Get)
	}
	if s.HitRatio != 0.75 {
		t.Errorf("HitRatio = %v", s.HitRatio)
	}
}

func TestNoAllocations(t *testing.T) {
	m := memory.New(nil)
	defer m.Close()
	_ = m.Set(bg, "k", []byte("v"), 0)
	c := cachekit.WithHooks(m, stats.New(&stats.Options{TimeEvery: 1}))
	for _, key := range []string{"k", "missing"} {
		bare := testing.AllocsPerRun(1000, func() { _, _ = m.Get(bg, key) })
		hooked := testing.AllocsPerRun(1000, func() { _, _ = c.Get(bg, key) })
		if hooked != bare {
			t.Errorf("Get(%q) allocates %v times with stats, %v times bare", key, hooked, bare)
		}
	}
	keys := []string{"k", "missing"}
	bare := testing.AllocsPerRun(1000, func() { _, _ = m.GetMany(bg, keys) })
	hooked := testing.AllocsPerRun(1000, func() { _, _ = c.GetMany(bg, keys) })
	if hooked != bare {
		t.Errorf("GetMany allocates %v times with stats, %v times bare", hooked, bare)
	}
}

// TestPercentiles feeds known durations through a hook that sleeps no
// time but reports them, by timing a fake cache whose Get takes a known
// time.
func TestPercentiles(t *testing.T) {
	st := stats.New(&stats.Options{TimeEvery: 1})
	slow := &sleepy{Cache: memory.New(nil)}
	defer slow.Close()
	c := cachekit.WithHooks(slow, st)
	// 98 calls of 1ms and 2 of 20ms: p50 about 1ms, p99 about 20ms.
	for i := range 100 {
		slow.d = time.Millisecond
		if i >= 98 {
			slow.d = 20 * time.Millisecond
		}
		_, _ = c.Get(bg, "k")
	}
	// Sleeps can only be longer than asked for, on a busy machine much
	// longer: check the lower bounds, and that the two are told apart.
	// (The histogram's accuracy is checked exactly in internal_test.go.)
	s := st.Snapshot()
	if s.Get.P50 < 900*time.Microsecond || s.Get.P99 < 18*time.Millisecond || s.Get.P50 >= s.Get.P99 {
		t.Errorf("P50 = %v, P99 = %v; want about 1ms and 20ms", s.Get.P50, s.Get.P99)
	}
}

type sleepy struct {
	cachekit.Cache
	d time.Duration
}

func (s *sleepy) Get(ctx context.Context, key string) ([]byte, error) {
	time.Sleep(s.d)
	return s.Cache.Get(ctx, key)
}

// TestAdaptiveSampling checks that a slow kind is timed on every call and
// a fast one once in 16.
func TestAdaptiveSampling(t *testing.T) {
	st := stats.New(nil)
	slow := &sleepy{Cache: memory.New(nil), d: 2 * stats.FastThreshold}
	defer slow.Close()
	c := cachekit.WithHooks(slow, st)
	for range 40 {
		_, _ = c.Get(bg, "k")
	}
	if got := timed(st); got != 40 {
		t.Errorf("slow Gets: %d of 40 timed, want all", got)
	}
}

// timed returns how many Gets st has timed, from the histogram's total,
// which the package's internal test exposes.
func timed(st *stats.Stats) uint64 { return stats.TimedGets(st) }

// TestSampling checks that fast calls are timed about once in 16 by
// default, and about once in n with TimeEvery n.
func TestSampling(t *testing.T) {
	m := memory.New(nil)
	defer m.Close()
	_ = m.Set(bg, "k", []byte("v"), 0)
	for _, tc := range []struct {
		every    int
		min, max uint64
	}{
		{0, 16000 / 16 / 2, 16000 / 16 * 4}, // slow outliers (GC, preemption) time a few more
		{4, 16000 / 4 / 2, 16000 / 4 * 2},
		{1, 16000, 16000},
	} {
		st := stats.New(&stats.Options{TimeEvery: tc.every})
		c := cachekit.WithHooks(m, st)
		for range 16000 {
			_, _ = c.Get(bg, "k")
		}
		n := timed(st)
		t.Logf("TimeEvery %d: %d of 16000 timed", tc.every, n)
		if n < tc.min || n > tc.max {
			t.Errorf("TimeEvery %d: %d of 16000 fast Gets timed, want %d to %d", tc.every, n, tc.min, tc.max)
		}
	}
}

// CompareAndDelete, the optional interface that WithHooks forwards, is
// counted under its own kind and is neither a hit nor a miss.
func TestCompareAndDelete(t *testing.T) {
	st := stats.New(nil)
	m := memory.New(nil)
	defer m.Close()
	c := cachekit.WithHooks(m, st)
	cad, ok := c.(cachekit.CompareAndDeleter)
	if !ok {
		t.Fatal("WithHooks over the memory backend hides CompareAndDeleter")
	}
	if err := c.Set(bg, "lease", []byte("tok"), 0); err != nil {
		t.Fatal(err)
	}
	if ok, err := cad.CompareAndDelete(bg, "lease", []byte("other")); ok || err != nil {
		t.Fatalf("CompareAndDelete(other) = %v, %v", ok, err)
	}
	if ok, err := cad.CompareAndDelete(bg, "lease", []byte("tok")); !ok || err != nil {
		t.Fatalf("CompareAndDelete(tok) = %v, %v", ok, err)
	}
	s := st.Snapshot()
	if s.CompareAndDelete.Count != 2 || s.Ops != 3 || s.Hits != 0 || s.Misses != 0 {
		t.Fatalf("CompareAndDelete %+v, ops %d, hits %d, misses %d; want 2 calls, 3 ops, no hits or misses",
			s.CompareAndDelete, s.Ops, s.Hits, s.Misses)
	}
	if s.ByKind(cachekit.OpCompareAndDelete) != s.CompareAndDelete {
		t.Fatal("ByKind(OpCompareAndDelete) is not the CompareAndDelete field")
	}
}

func TestCompareAndSwap(t *testing.T) {
	st := stats.New(nil)
	m := memory.New(nil)
	defer m.Close()
	c := cachekit.WithHooks(m, st)
	cas, ok := c.(cachekit.CompareAndSwapper)
	if !ok {
		t.Fatal("WithHooks over the memory backend hides CompareAndSwapper")
	}
	if ok, err := cas.CompareAndSwap(bg, "doc", nil, []byte("v1"), 0); !ok || err != nil {
		t.Fatalf("CompareAndSwap(nil -> v1) = %v, %v", ok, err)
	}
	if ok, err := cas.CompareAndSwap(bg, "doc", []byte("v0"), []byte("v2"), 0); ok || err != nil {
		t.Fatalf("CompareAndSwap(v0 -> v2) = %v, %v", ok, err)
	}
	s := st.Snapshot()
	if s.CompareAndSwap.Count != 2 || s.Ops != 2 || s.Hits != 0 || s.Misses != 0 {
		t.Fatalf("CompareAndSwap %+v, ops %d, hits %d, misses %d; want 2 calls, 2 ops, no hits or misses",
			s.CompareAndSwap, s.Ops, s.Hits, s.Misses)
	}
	if s.ByKind(cachekit.OpCompareAndSwap) != s.CompareAndSwap {
		t.Fatal("ByKind(OpCompareAndSwap) is not the CompareAndSwap field")
	}
}

// TestLocalHitsAndTagMisses: a read answered by a Typed's local tier is a hit
// in the totals (no cache operation saw it), and a tagged entry whose tag was
// invalidated is a miss (the cache found it, the caller did not get it).
func TestLocalHitsAndTagMisses(t *testing.T) {
	st := stats.New(nil)
	m := memory.New(nil)
	defer m.Close()
	c := cachekit.WithHooks(m, st)

	local := cachekit.NewTyped[string](c, &cachekit.TypedOptions{Local: &cachekit.LocalOptions{}})
	defer local.Close()
	if err := local.Set(bg, "k", "v"); err != nil {
		t.Fatal(err)
	}
	for range 3 { // answered in process: no Get reaches the cache
		if v, err := local.Get(bg, "k"); err != nil || v != "v" {
			t.Fatalf("local Get = %q, %v", v, err)
		}
	}
	s := st.Snapshot()
	if s.Get.Count != 0 || s.LocalHits != 3 || s.Hits != 3 || s.Misses != 0 {
		t.Fatalf("after 3 local hits: Get %+v, LocalHits %d, Hits %d, Misses %d; want 0 Gets, 3 local hits, 3 hits",
			s.Get, s.LocalHits, s.Hits, s.Misses)
	}

	st.Reset()
	tagged := cachekit.NewTyped[string](c, nil)
	if err := tagged.Set(bg, "t", "v", cachekit.WithTags("group")); err != nil {
		t.Fatal(err)
	}
	if err := tagged.InvalidateTags(bg, "group"); err != nil {
		t.Fatal(err)
	}
	if _, err := tagged.Get(bg, "t"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("Get of an entry whose tag was invalidated: %v, want ErrNotFound", err)
	}
	s = st.Snapshot()
	if s.TagMisses != 1 || s.Misses < 1 || s.Hits != s.Get.Hits+s.GetMany.Hits+s.Exists.Hits-1 {
		t.Fatalf("after a tag miss: TagMisses %d, Hits %d, Misses %d (Get %+v, GetMany %+v); want the tag miss moved from hits to misses",
			s.TagMisses, s.Hits, s.Misses, s.Get, s.GetMany)
	}
}

// TestTagStampsAreNotCounted: the stamps that a Typed reads to check the
// tags of a value (keys with cachekit.TagKeyPrefix) are not hits or misses;
// the totals count what the caller got.
func TestTagStampsAreNotCounted(t *testing.T) {
	st := stats.New(nil)
	m := memory.New(nil)
	defer m.Close()
	typed := cachekit.NewTyped[string](cachekit.WithHooks(m, st), nil)
	want := func(what string, hits, misses uint64) {
		t.Helper()
		if s := st.Snapshot(); s.Hits != hits || s.Misses != misses {
			t.Errorf("%s: Hits %d, Misses %d; want %d, %d", what, s.Hits, s.Misses, hits, misses)
		}
		st.Reset()
	}
	if err := typed.Set(bg, "k", "v", cachekit.WithTags("t")); err != nil { // reads the new tag's stamp
		t.Fatal(err)
	}
	want("Set with a new tag", 0, 0)
	if v, err := typed.Get(bg, "k"); err != nil || v != "v" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	want("Get of a tagged value", 1, 0)
	if err := typed.InvalidateTags(bg, "t"); err != nil {
		t.Fatal(err)
	}
	st.Reset()
	if _, err := typed.Get(bg, "k"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("Get after InvalidateTags: %v; want a miss", err)
	}
	want("Get of a value whose tag was invalidated", 0, 1)
	if _, err := typed.GetMany(bg, []string{"k", "none"}); err != nil {
		t.Fatal(err)
	}
	want("GetMany of an invalidated value and a missing key", 0, 2)
}
