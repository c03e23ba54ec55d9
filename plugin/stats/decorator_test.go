package stats_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
	"github.com/cachekit/cachekit/decorator"
	"github.com/cachekit/cachekit/plugin/stats"
)

// The hit ratio of a decorated function is the real one: N distinct keys
// called twice each are N misses and N hits, and a stored value that does
// not decode (after a serializer change, say) is a miss, not a hit.
func TestDecoratedHitRatioIsExact(t *testing.T) {
	const n = 50
	st := stats.New(nil)
	m := memory.New(nil)
	defer m.Close()
	c := cachekit.WithHooks(m, st)
	f := decorator.New(cachekit.NewTyped[string](c, nil), func(_ context.Context, id int) (string, error) {
		return strconv.Itoa(id), nil
	}, &decorator.Options[int]{Name: "f"})

	for id := range n {
		if _, err := f.Call(bg, id); err != nil {
			t.Fatal(err)
		}
	}
	f.Wait() // the writes are made in the background
	for id := range n {
		if v, err := f.Call(bg, id); err != nil || v != strconv.Itoa(id) {
			t.Fatalf("Call(%d) = %q, %v", id, v, err)
		}
	}
	s := st.Snapshot()
	if s.Hits != n || s.Misses != n || s.HitRatio != 0.5 || s.Loads != n {
		t.Fatalf("hits %d, misses %d, ratio %v, loads %d; want %d, %d, 0.5, %d", s.Hits, s.Misses, s.HitRatio, s.Loads, n, n, n)
	}

	// Values in an old format: the cache finds them, the reader can't use
	// them, fn runs: misses.
	st.Reset()
	for id := n; id < 2*n; id++ {
		key, _ := f.Key(id)
		if err := m.Set(bg, key, []byte("\x00not json"), 0); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Call(bg, id); err != nil {
			t.Fatal(err)
		}
	}
	f.Wait()
	s = st.Snapshot()
	if s.Hits != 0 || s.Misses != n || s.DecodeErrors != n || s.Loads != n {
		t.Fatalf("undecodable values: hits %d, misses %d, decode errors %d, loads %d; want 0, %d, %d, %d",
			s.Hits, s.Misses, s.DecodeErrors, s.Loads, n, n, n)
	}
	if s.Get.Hits != n {
		t.Fatalf("Get.Hits = %d; want %d: the per-method counts keep what the cache answered", s.Get.Hits, n)
	}
}
