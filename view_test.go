package cachekit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
	"github.com/cachekit/cachekit/plugin/stats"
	"github.com/cachekit/cachekit/serializer"
)

// Caches with every combination of the optional interfaces, over memory:
// a wrapper must have exactly the optional interfaces of what it wraps.
type (
	optNone struct{ cachekit.Cache }
	optCAD  struct {
		optNone
		cadOf
	}
	optCAS struct {
		optNone
		casOf
	}
	optSG struct {
		optNone
		sgOf
	}
	optCADCAS struct {
		optNone
		cadOf
		casOf
	}
	optCADSG struct {
		optNone
		cadOf
		sgOf
	}
	optCASSG struct {
		optNone
		casOf
		sgOf
	}
	optAll struct {
		optNone
		cadOf
		casOf
		sgOf
	}

	optVer struct {
		optNone
		cadOf
		casOf
		verOf
	}
	optVerSG struct {
		optNone
		cadOf
		casOf
		verOf
		sgOf
	}

	cadOf struct{ m *memory.Cache }
	verOf struct{ m *memory.Cache }
	casOf struct{ m *memory.Cache }
	sgOf  struct{ m *memory.Cache }
)

func (x cadOf) CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	return x.m.CompareAndDelete(ctx, key, old)
}

func (x casOf) CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	return x.m.CompareAndSwap(ctx, key, old, new, ttl)
}

func (x verOf) GetVersion(ctx context.Context, key string) ([]byte, uint64, error) {
	return x.m.GetVersion(ctx, key)
}

func (x verOf) AddVersion(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	return x.m.AddVersion(ctx, key, value, ttl)
}

func (x verOf) SwapVersion(ctx context.Context, key string, version uint64, value []byte, ttl time.Duration) (uint64, bool, error) {
	return x.m.SwapVersion(ctx, key, version, value, ttl)
}

func (x verOf) DeleteVersion(ctx context.Context, key string, version uint64) (bool, error) {
	return x.m.DeleteVersion(ctx, key, version)
}

func (x sgOf) GetShared(ctx context.Context, key string) ([]byte, error) {
	return x.m.GetShared(ctx, key)
}

func optionalCaches(m *memory.Cache) map[string]cachekit.Cache {
	n := optNone{m}
	return map[string]cachekit.Cache{
		"none":             n,
		"cad":              optCAD{n, cadOf{m}},
		"cas":              optCAS{n, casOf{m}},
		"shared":           optSG{n, sgOf{m}},
		"cad+cas":          optCADCAS{n, cadOf{m}, casOf{m}},
		"cad+shared":       optCADSG{n, cadOf{m}, sgOf{m}},
		"cas+shared":       optCASSG{n, casOf{m}, sgOf{m}},
		"cad+cas+shared":   optAll{n, cadOf{m}, casOf{m}, sgOf{m}},
		"versioner":        optVer{n, cadOf{m}, casOf{m}, verOf{m}},
		"versioner+shared": optVerSG{n, cadOf{m}, casOf{m}, verOf{m}, sgOf{m}},
	}
}

type optionalSet struct{ cad, cas, sg, ver bool }

func optionalsOf(c cachekit.Cache) optionalSet {
	_, cad := c.(cachekit.CompareAndDeleter)
	_, cas := c.(cachekit.CompareAndSwapper)
	_, sg := c.(cachekit.SharedGetter)
	_, ver := c.(cachekit.Versioner)
	return optionalSet{cad, cas, sg, ver}
}

// TestWrappersForwardSharedGetter checks that WithHooks and the local
// tier's wrapper (Typed.Cache) implement exactly the optional interfaces
// of the cache they wrap, for every combination, and that their GetShared
// reads what the wrapped cache holds.
func TestWrappersForwardSharedGetter(t *testing.T) {
	ctx := context.Background()
	m := memory.New(nil)
	defer m.Close()
	if err := m.Set(ctx, "k", []byte(`"v"`), 0); err != nil {
		t.Fatal(err)
	}
	for name, c := range optionalCaches(m) {
		want := optionalsOf(c)
		typed := cachekit.NewTyped[string](c, &cachekit.TypedOptions{Local: &cachekit.LocalOptions{}})
		defer typed.Close()
		hooked := cachekit.WithHooks(c, cachekit.HookFunc(func(ctx context.Context, op *cachekit.Op) error { return op.Next(ctx) }))
		for wname, w := range map[string]cachekit.Cache{
			"WithHooks":         hooked,
			"WithHooks twice":   cachekit.WithHooks(hooked, cachekit.EventHookFunc(func(context.Context, cachekit.Event) {})),
			"Typed.Cache":       typed.Cache(),
			"Typed.Cache+hooks": cachekit.NewTyped[string](hooked, &cachekit.TypedOptions{Local: &cachekit.LocalOptions{}}).Cache(),
		} {
			if got := optionalsOf(w); got != want {
				t.Errorf("%s over %s: optional interfaces %+v; want %+v", wname, name, got, want)
				continue
			}
			if v, ok := w.(cachekit.Versioner); ok {
				b, ver, err := v.GetVersion(ctx, "k")
				if err != nil || string(b) != `"v"` || ver == 0 {
					t.Errorf("%s over %s: GetVersion = %q, %d, %v; want \"v\" and a version", wname, name, b, ver, err)
				}
				nv, ok, err := v.SwapVersion(ctx, "k", ver, []byte(`"v"`), 0)
				if !ok || err != nil || nv == ver {
					t.Errorf("%s over %s: SwapVersion = %d, %v, %v; want a new version", wname, name, nv, ok, err)
				}
			}
			if sg, ok := w.(cachekit.SharedGetter); ok {
				b, err := sg.GetShared(ctx, "k")
				if err != nil || string(b) != `"v"` {
					t.Errorf("%s over %s: GetShared = %q, %v; want \"v\"", wname, name, b, err)
				}
				if _, err := sg.GetShared(ctx, "absent"); !errors.Is(err, cachekit.ErrNotFound) {
					t.Errorf("%s over %s: GetShared(absent): %v; want ErrNotFound", wname, name, err)
				}
			}
		}
	}
}

// TestHooksSeeSharedGetAsGet checks that a GetShared through WithHooks is
// one Op of kind OpGet, with Op.Shared true, and that hooks can answer it.
func TestHooksSeeSharedGetAsGet(t *testing.T) {
	ctx := context.Background()
	m := memory.New(nil)
	defer m.Close()
	if err := m.Set(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	var seen []string
	record := cachekit.HookFunc(func(ctx context.Context, op *cachekit.Op) error {
		err := op.Next(ctx)
		seen = append(seen, fmt.Sprintf("%s shared=%v %s %q", op.Name(), op.Shared(), op.Outcome(), op.Value))
		return err
	})
	c := cachekit.WithHooks(m, record)
	sg := c.(cachekit.SharedGetter)
	if b, err := sg.GetShared(ctx, "k"); err != nil || string(b) != "v" {
		t.Fatalf("GetShared = %q, %v", b, err)
	}
	if _, err := sg.GetShared(ctx, "absent"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("GetShared(absent): %v; want ErrNotFound", err)
	}
	if _, err := c.Get(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	want := []string{`Get shared=true hit "v"`, `Get shared=true miss ""`, `Get shared=false hit "v"`}
	if !reflect.DeepEqual(seen, want) {
		t.Fatalf("hooks saw %q; want %q", seen, want)
	}

	// A hook that answers the shared Get itself.
	answer := cachekit.WithHooks(m, cachekit.HookFunc(func(ctx context.Context, op *cachekit.Op) error {
		if op.Kind() == cachekit.OpGet && op.Shared() {
			op.Value = []byte("from the hook")
			return nil
		}
		return op.Next(ctx)
	}))
	if b, err := answer.(cachekit.SharedGetter).GetShared(ctx, "k"); err != nil || string(b) != "from the hook" {
		t.Fatalf("GetShared answered by a hook = %q, %v", b, err)
	}
	// A hook's own error is named after Get.
	failing := cachekit.WithHooks(m, cachekit.HookFunc(func(ctx context.Context, op *cachekit.Op) error {
		return errors.New("hook says no")
	}))
	_, err := failing.(cachekit.SharedGetter).GetShared(ctx, "k")
	var ce *cachekit.Error
	if !errors.As(err, &ce) || ce.Op != "Get" || ce.Key != "k" {
		t.Fatalf("GetShared failed by a hook: %v; want a *cachekit.Error with Op Get, Key k", err)
	}
}

// TestStatsCountTypedGetOnce checks that a Typed.Get over a hooked memory
// cache, which reads with GetShared, counts once in the stats plugin: one
// Get, one hit or one miss, as before GetShared existed.
func TestStatsCountTypedGetOnce(t *testing.T) {
	ctx := context.Background()
	m := memory.New(nil)
	defer m.Close()
	st := stats.New(nil)
	var gets, shared atomic.Int64
	spy := cachekit.HookFunc(func(ctx context.Context, op *cachekit.Op) error {
		if op.Kind() == cachekit.OpGet {
			gets.Add(1)
			if op.Shared() {
				shared.Add(1)
			}
		}
		return op.Next(ctx)
	})
	typed := cachekit.NewTyped[int](cachekit.WithHooks(m, st, spy), nil)
	if err := typed.Set(ctx, "k", 42); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if v, err := typed.Get(ctx, "k"); err != nil || v != 42 {
			t.Fatalf("Get = %v, %v; want 42", v, err)
		}
	}
	if _, err := typed.Get(ctx, "absent"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("Get(absent): %v; want ErrNotFound", err)
	}
	snap := st.Snapshot()
	if snap.Get.Count != 4 || snap.Get.Hits != 3 || snap.Get.Misses != 1 || snap.Hits != 3 || snap.Misses != 1 {
		t.Fatalf("stats after 3 hits and 1 miss: Get %+v, Hits %d, Misses %d; want Count 4, Hits 3, Misses 1", snap.Get, snap.Hits, snap.Misses)
	}
	if gets.Load() != 4 || shared.Load() != 4 {
		t.Fatalf("hooks saw %d Gets, %d of them shared; want 4, all shared", gets.Load(), shared.Load())
	}
}

// sharedSpy is a cache whose Get fails the test: Typed must read with
// GetShared when the cache has it.
type sharedSpy struct {
	*memory.Cache
	t      *testing.T
	shared atomic.Int64
}

func (s *sharedSpy) Get(ctx context.Context, key string) ([]byte, error) {
	s.t.Errorf("Typed called Get(%q) on a cache that has GetShared", key)
	return s.Cache.Get(ctx, key)
}

func (s *sharedSpy) GetShared(ctx context.Context, key string) ([]byte, error) {
	s.shared.Add(1)
	return s.Cache.GetShared(ctx, key)
}

func TestTypedGetReadsShared(t *testing.T) {
	ctx := context.Background()
	m := memory.New(nil)
	defer m.Close()
	spy := &sharedSpy{Cache: m, t: t}
	writer := cachekit.NewTyped[[]string](m, nil)
	for _, local := range []bool{false, true} {
		var opts cachekit.TypedOptions
		if local {
			opts.Local = &cachekit.LocalOptions{}
		}
		typed := cachekit.NewTyped[[]string](spy, &opts)
		key := "k" + strconv.FormatBool(local)
		if err := writer.Set(ctx, key, []string{"a", "b"}, cachekit.WithTags("t")); err != nil {
			t.Fatal(err)
		}
		before := spy.shared.Load()
		v, err := typed.GetOrLoad(ctx, key, func(context.Context) ([]string, error) {
			t.Fatal("loaded a present key")
			return nil, nil
		})
		if err != nil || !reflect.DeepEqual(v, []string{"a", "b"}) {
			t.Fatalf("local=%v: GetOrLoad = %q, %v", local, v, err)
		}
		if spy.shared.Load() == before {
			t.Fatalf("local=%v: GetOrLoad did not read with GetShared", local)
		}
		typed.Close()
	}
}

// intCodec decodes base-10 ints without allocating, so that an allocation
// measured around Typed.Get is Typed's or the backend's.
type intCodec struct{}

func (intCodec) Marshal(v any) ([]byte, error) {
	return strconv.AppendInt(nil, int64(v.(int)), 10), nil
}

func (intCodec) Unmarshal(data []byte, v any) error {
	n := 0
	for _, c := range data {
		if c < '0' || c > '9' {
			return errors.New("not a number")
		}
		n = n*10 + int(c-'0')
	}
	*v.(*int) = n
	return nil
}

// TestTypedGetSharedAllocatesNoCopy checks the point of GetShared: a hit
// of Typed.Get over memory (without and with hooks) allocates nothing but
// what decoding the same bytes with Typed.Decode does, where a read with
// Get allocates the copy too.
func TestTypedGetSharedAllocatesNoCopy(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	ctx := context.Background()
	m := memory.New(nil)
	defer m.Close()
	for name, c := range map[string]cachekit.Cache{
		"memory":                          m,
		"hooked memory":                   cachekit.WithHooks(m, cachekit.HookFunc(func(ctx context.Context, op *cachekit.Op) error { return op.Next(ctx) })),
		"memory, no GetShared (the copy)": optNone{m},
	} {
		typed := cachekit.NewTyped[int](c, &cachekit.TypedOptions{Serializer: intCodec{}})
		if err := typed.Set(ctx, "n", 12345); err != nil {
			t.Fatal(err)
		}
		// What decoding costs on its own: the destination, which escapes
		// through the Serializer interface.
		data := []byte("12345")
		decode := testing.AllocsPerRun(1000, func() {
			if v, err := typed.Decode(data); err != nil || v != 12345 {
				t.Fatalf("Decode = %v, %v", v, err)
			}
		})
		allocs := testing.AllocsPerRun(1000, func() {
			if v, err := typed.Get(ctx, "n"); err != nil || v != 12345 {
				t.Fatalf("Get = %v, %v", v, err)
			}
		})
		want := decode
		if _, ok := c.(cachekit.SharedGetter); !ok {
			want++ // Get's copy: shows that the count measures it
		}
		if allocs != want {
			t.Errorf("%s: Typed.Get hit allocates %v times per call; want %v (Typed.Decode's own %v)", name, allocs, want, decode)
		}
	}
}

// TestLocalCopyKeepsSharedBytes checks LocalOptions.Copy over a cache with
// GetShared: the local tier keeps the stored bytes themselves and decodes
// a private value from them on every hit, and those bytes stay what they
// were when the key is overwritten behind the local tier's back (memory
// never writes into stored bytes), so every hit decodes the value read.
func TestLocalCopyKeepsSharedBytes(t *testing.T) {
	ctx := context.Background()
	m := memory.New(nil)
	defer m.Close()
	typed := cachekit.NewTyped[[]string](m, &cachekit.TypedOptions{
		Serializer: serializer.MsgPack{},
		Local:      &cachekit.LocalOptions{Copy: true, TTL: time.Hour},
	})
	defer typed.Close()
	if err := m.Set(ctx, "k", mustMsgpack(t, []string{"aaaa", "bbbb"}), 0); err != nil {
		t.Fatal(err)
	}
	v, err := typed.Get(ctx, "k") // fills the local tier from GetShared's bytes
	if err != nil || !reflect.DeepEqual(v, []string{"aaaa", "bbbb"}) {
		t.Fatalf("Get = %q, %v", v, err)
	}
	v[0] = "XXXX" // a private copy: the next hit must not see it
	// Overwrite the key directly, with an encoding of the same length, as
	// an in-place write would: the local tier has no way to know.
	if err := m.Set(ctx, "k", mustMsgpack(t, []string{"cccc", "dddd"}), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Increment(ctx, "other", 1); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		v, err := typed.Get(ctx, "k")
		if err != nil || !reflect.DeepEqual(v, []string{"aaaa", "bbbb"}) {
			t.Fatalf("local hit = %q, %v; want the value read, [aaaa bbbb]", v, err)
		}
	}
}

func mustMsgpack(t *testing.T, v any) []byte {
	t.Helper()
	b, err := serializer.MsgPack{}.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// partialCache is a test-only cache whose GetMany returns a partial
// result: the values of the keys not in down, with an error wrapping
// ErrUnavailable when any key is in down, as a Memcached pool with a dead
// server does. With noValues, it returns the error alone.
type partialCache struct {
	*memory.Cache
	down     map[string]bool
	noValues bool
}

func (p *partialCache) GetMany(ctx context.Context, keys []string) (map[string][]byte, error) {
	var up []string
	failed := false
	for _, k := range keys {
		if p.down[k] {
			failed = true
		} else {
			up = append(up, k)
		}
	}
	out, err := p.Cache.GetMany(ctx, up)
	if err != nil {
		return nil, err
	}
	if failed {
		err := &cachekit.Error{Op: "GetMany", Err: fmt.Errorf("server 10.0.0.2:11211: %w", cachekit.ErrUnavailable)}
		if p.noValues {
			return nil, err
		}
		return out, err
	}
	return out, nil
}

func TestTypedGetManyPartial(t *testing.T) {
	ctx := context.Background()
	m := memory.New(nil)
	defer m.Close()
	p := &partialCache{Cache: m, down: map[string]bool{"b": true, "d": true}}
	hooked := cachekit.WithHooks(p, cachekit.HookFunc(func(ctx context.Context, op *cachekit.Op) error { return op.Next(ctx) }))
	for _, tc := range []struct {
		name  string
		c     cachekit.Cache
		local bool
	}{
		{"plain", p, false},
		{"hooked", hooked, false},
		{"local tier", p, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts cachekit.TypedOptions
			if tc.local {
				opts.Local = &cachekit.LocalOptions{}
			}
			typed := cachekit.NewTyped[int](tc.c, &opts)
			defer typed.Close()
			for i, k := range []string{"a", "b", "c", "d"} {
				if err := typed.Set(ctx, k, i); err != nil {
					t.Fatal(err)
				}
			}
			if tc.local {
				// "a" and "d" are in the local tier (Set keeps them);
				// "b" and "c" are not, so they are read remotely.
				if _, err := typed.Cache().Delete(ctx, "b", "c"); err != nil {
					t.Fatal(err)
				}
				if err := m.SetMany(ctx, map[string][]byte{"b": []byte("1"), "c": []byte("2")}, 0); err != nil {
					t.Fatal(err)
				}
			}
			got, err := typed.GetMany(ctx, []string{"a", "b", "c", "d", "e"})
			var ce *cachekit.Error
			if !errors.Is(err, cachekit.ErrUnavailable) || !errors.As(err, &ce) || ce.Op != "GetMany" {
				t.Fatalf("GetMany with a server down: %v; want a *cachekit.Error with Op GetMany wrapping ErrUnavailable", err)
			}
			want := map[string]int{"a": 0, "c": 2}
			if tc.local {
				want["d"] = 3 // from the local tier, though its server is down
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("GetMany partial result = %v; want %v", got, want)
			}
		})
	}

	// An error with no values returns no map.
	none := &partialCache{Cache: m, down: map[string]bool{"b": true}, noValues: true}
	got, err := cachekit.NewTyped[int](none, nil).GetMany(ctx, []string{"a", "b"})
	if got != nil || !errors.Is(err, cachekit.ErrUnavailable) {
		t.Fatalf("GetMany with an error and no values = %v, %v; want nil, ErrUnavailable", got, err)
	}
	// A partial result with a value that does not decode: the decode error.
	if err := m.Set(ctx, "bad", []byte("not json"), 0); err != nil {
		t.Fatal(err)
	}
	got, err = cachekit.NewTyped[int](p, nil).GetMany(ctx, []string{"a", "b", "bad"})
	if got != nil || !errors.Is(err, cachekit.ErrDecode) {
		t.Fatalf("GetMany partial with garbage = %v, %v; want nil, ErrDecode", got, err)
	}
	// Without a key down, no error.
	got, err = cachekit.NewTyped[int](p, nil).GetMany(ctx, []string{"a", "c"})
	if err != nil || len(got) != 2 {
		t.Fatalf("GetMany of live keys = %v, %v; want 2 values, nil", got, err)
	}
}

// TestSharedBytesUnchangedByTyped checks that nothing on Typed's read path
// writes into the shared bytes: after reads with each serializer, tagged
// and untagged, the stored bytes are what was written.
func TestSharedBytesUnchangedByTyped(t *testing.T) {
	ctx := context.Background()
	m := memory.New(nil)
	defer m.Close()
	for name, ser := range map[string]serializer.Serializer{"json": serializer.JSON{}, "msgpack": serializer.MsgPack{}} {
		typed := cachekit.NewTyped[map[string][]int](m, &cachekit.TypedOptions{Serializer: ser})
		for _, tags := range [][]string{nil, {"t1", "t2"}} {
			key := name + strconv.Itoa(len(tags))
			if err := typed.Set(ctx, key, map[string][]int{"x": {1, 2, 3}, "y": nil}, cachekit.WithTags(tags...)); err != nil {
				t.Fatal(err)
			}
			before, err := m.Get(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			shared, err := m.GetShared(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				v, err := typed.Get(ctx, key)
				if err != nil || len(v["x"]) != 3 {
					t.Fatalf("%s: Get = %v, %v", key, v, err)
				}
				v["x"][0] = 99 // the caller's own value
				if _, err := typed.GetMany(ctx, []string{key}); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(shared, before) {
				t.Fatalf("%s: stored bytes changed by reads: %q; were %q", key, shared, before)
			}
		}
	}
}
