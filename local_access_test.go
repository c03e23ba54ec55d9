package cachekit_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachekit/cachekit"
)

func TestLocalTierNilWithoutLocal(t *testing.T) {
	cl := newCluster(t, 1, cachekit.TypedOptions{Backplane: cachekit.NewMemoryBackplane()})
	if l := cl.typed[0].LocalTier(); l != nil {
		t.Fatalf("LocalTier() = %v without TypedOptions.Local; want nil", l)
	}
}

// Shared entries are Typed's own: what a layer fills, Typed.Get returns
// from memory, and the other way round; a token that moved keeps nothing.
func TestLocalTierSharedEntries(t *testing.T) {
	cl := newCluster(t, 1, cachekit.TypedOptions{Local: &cachekit.LocalOptions{}})
	typed, h := cl.typed[0], cl.hooks[0]
	l := typed.LocalTier()
	if l.Copy() {
		t.Fatal("Copy() is true without LocalOptions.Copy")
	}
	tok := l.Token("k")
	if err := cl.mem.Set(ctx, "k", []byte(`"v"`), 0); err != nil {
		t.Fatal(err)
	}
	l.Fill("k", "v", []byte(`"v"`), 0, tok)
	if v, err := typed.Get(ctx, "k"); err != nil || v != "v" || h.count("Get") != 0 {
		t.Fatalf("Get after Fill = %q, %v with %d cache Gets; want \"v\" from memory", v, err, h.count("Get"))
	}

	// A write between the token and the fill: nothing is kept.
	tok = l.Token("k2")
	if err := typed.Set(ctx, "k2", "new"); err != nil {
		t.Fatal(err)
	}
	typed.Cache().Delete(ctx, "k2") // drops what Set kept
	l.Fill("k2", "old", []byte(`"old"`), 0, tok)
	if v, ok := l.Get("k2"); ok {
		t.Fatalf("Fill with a token older than a write kept %q", v)
	}

	// A value that Typed.Get kept is a hit for the layer.
	if err := cl.mem.Set(ctx, "k3", []byte(`"three"`), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := typed.Get(ctx, "k3"); err != nil {
		t.Fatal(err)
	}
	if v, ok := l.Get("k3"); !ok || v != "three" {
		t.Fatalf("LocalTier.Get after Typed.Get = %q, %v; want \"three\", true", v, ok)
	}
	// A private entry is not a shared one.
	l.FillPrivate("k4", "private", []byte("layer bytes"), 0, l.Token("k4"))
	if v, ok := l.Get("k4"); ok {
		t.Fatalf("LocalTier.Get returned the private entry %q", v)
	}
}

// A tagged value is not kept by Fill: the layer did not check its tags.
func TestLocalTierFillRefusesTaggedValues(t *testing.T) {
	cl := newCluster(t, 1, cachekit.TypedOptions{Local: &cachekit.LocalOptions{}, Backplane: cachekit.NewMemoryBackplane()})
	typed := cl.typed[0]
	if err := typed.Set(ctx, "k", "v", cachekit.WithTags("t")); err != nil {
		t.Fatal(err)
	}
	b, err := cl.mem.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	l := typed.LocalTier()
	if err := typed.InvalidateTags(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	l.Fill("k", "v", b, 0, l.Token("k"))
	if v, ok := l.Get("k"); ok {
		t.Fatalf("Fill kept the tagged value %q", v)
	}
	if _, err := typed.Get(ctx, "k"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("Get of an invalidated tagged entry: %v; want ErrNotFound", err)
	}
}

// Private entries are the layer's: Typed's reads never return them, they
// read the cache as without a local tier (and drop the entry).
func TestLocalTierPrivateEntriesAreInvisibleToTyped(t *testing.T) {
	cl := newCluster(t, 1, cachekit.TypedOptions{Local: &cachekit.LocalOptions{}})
	typed, h := cl.typed[0], cl.hooks[0]
	l := typed.LocalTier()
	l.FillPrivate("k", "decoded", []byte("\xc1layer"), 0, l.Token("k"))
	v, b, ok := l.GetPrivate("k", time.Now())
	if !ok || v != "decoded" || string(b) != "\xc1layer" {
		t.Fatalf("GetPrivate = %q, %q, %v; want the entry filled", v, b, ok)
	}
	if got, err := typed.Get(ctx, "k"); !errors.Is(err, cachekit.ErrNotFound) || h.count("Get") != 1 {
		t.Fatalf("Typed.Get over a private entry = %q, %v after %d cache Gets; want a cache read and its miss", got, err, h.count("Get"))
	}
	if got, err := typed.GetMany(ctx, []string{"k"}); err != nil || len(got) != 0 || h.count("GetMany") != 1 {
		t.Fatalf("Typed.GetMany over a private entry = %v, %v; want a cache read and its miss", got, err)
	}
	if _, _, ok := l.GetPrivate("k", time.Now()); ok {
		t.Fatal("the private entry survived a Typed read of its key")
	}
}

// Set writes through t.Cache() (publishing), then keeps the value: as a
// shared entry, or a private one.
func TestLocalTierSetKeepsAndPublishes(t *testing.T) {
	cl := newCluster(t, 2, cachekit.TypedOptions{Local: &cachekit.LocalOptions{}, Backplane: cachekit.NewMemoryBackplane()})
	a, b := cl.typed[0], cl.typed[1]
	if err := b.Set(ctx, "p", "b's"); err != nil {
		t.Fatal(err)
	}
	if err := b.Set(ctx, "s", "b's"); err != nil {
		t.Fatal(err)
	}
	l := a.LocalTier()
	if err := l.Set(ctx, "p", []byte("\xc1envelope"), time.Minute, "private", true); err != nil {
		t.Fatal(err)
	}
	if err := l.Set(ctx, "s", []byte(`"shared"`), time.Minute, "shared", false); err != nil {
		t.Fatal(err)
	}
	if v, raw, ok := l.GetPrivate("p", time.Now()); !ok || v != "private" || string(raw) != "\xc1envelope" {
		t.Fatalf("GetPrivate after Set = %q, %q, %v", v, raw, ok)
	}
	if v, err := a.Get(ctx, "s"); err != nil || v != "shared" || cl.hooks[0].count("Get") != 0 {
		t.Fatalf("Get after a shared Set = %q, %v with %d cache Gets; want it from memory", v, err, cl.hooks[0].count("Get"))
	}
	// b's local entries were dropped by a's messages: b reads the cache.
	if v, err := b.Get(ctx, "s"); err != nil || v != "shared" {
		t.Fatalf("the other Typed reads %q, %v; want a's write", v, err)
	}
	if n := cl.hooks[1].count("Get"); n != 1 {
		t.Fatalf("the other Typed made %d cache Gets; want 1 (its entry was dropped)", n)
	}
}

// A write or invalidation of the key that overlaps Set: Set does not keep
// its value, which may be older than the other write's.
func TestLocalTierSetDoesNotKeepAnOverlappedWrite(t *testing.T) {
	bp := cachekit.NewMemoryBackplane()
	cl := newCluster(t, 1, cachekit.TypedOptions{Backplane: bp})
	var armed atomic.Bool
	hook := cachekit.HookFunc(func(ctx context.Context, op *cachekit.Op) error {
		err := op.Next(ctx)
		if op.Kind() == cachekit.OpSet && armed.CompareAndSwap(true, false) {
			// Another process writes the key right after this Set landed
			// and before it returned.
			if err := cl.typed[0].Set(ctx, "k", "other"); err != nil {
				return err
			}
		}
		return err
	})
	a := cachekit.NewTyped[string](cachekit.WithHooks(cl.mem, hook), &cachekit.TypedOptions{Local: &cachekit.LocalOptions{}, Backplane: bp})
	t.Cleanup(func() { a.Close() })
	l := a.LocalTier()
	armed.Store(true)
	if err := l.Set(ctx, "k", []byte("\xc1mine"), 0, "mine", true); err != nil {
		t.Fatal(err)
	}
	if v, _, ok := l.GetPrivate("k", time.Now()); ok {
		t.Fatalf("Set kept %q though another write overlapped it", v)
	}
	armed.Store(true)
	if err := l.Set(ctx, "k", []byte(`"mine"`), 0, "mine", false); err != nil {
		t.Fatal(err)
	}
	if v, err := a.Get(ctx, "k"); err != nil || v != "other" {
		t.Fatalf("Get = %q, %v; want the later write, \"other\"", v, err)
	}
}

// SetMany keeps every key, also when several share a coherence stripe
// (600 keys over 256 stripes), and the other Typed's entries are dropped.
func TestLocalTierSetManyKeepsEveryKey(t *testing.T) {
	cl := newCluster(t, 2, cachekit.TypedOptions{Local: &cachekit.LocalOptions{}, Backplane: cachekit.NewMemoryBackplane()})
	a, b := cl.typed[0], cl.typed[1]
	items := map[string][]byte{}
	values := map[string]string{}
	for i := range 600 {
		k := fmt.Sprint("k", i)
		items[k] = []byte("\xc1" + k)
		values[k] = k
		if i == 0 {
			if err := b.Set(ctx, k, "b's"); err != nil {
				t.Fatal(err)
			}
		}
	}
	delete(values, "k599") // written, not kept
	l := a.LocalTier()
	if err := l.SetMany(ctx, items, time.Minute, values, true); err != nil {
		t.Fatal(err)
	}
	for k := range items {
		v, raw, ok := l.GetPrivate(k, time.Now())
		if k == "k599" {
			if ok {
				t.Errorf("%s kept without a value", k)
			}
			continue
		}
		if !ok || v != k || string(raw) != "\xc1"+k {
			t.Fatalf("GetPrivate(%s) = %q, %q, %v after SetMany", k, v, raw, ok)
		}
	}
	if v, err := b.Get(ctx, "k0"); err == nil && v == "b's" {
		t.Fatal("the other Typed still serves its entry after SetMany published")
	}
}

// Private entries go with every write and invalidation of their key, with
// a backplane reset, with their lifetime, and with Typed.Close.
func TestLocalTierPrivateEntriesStayCoherent(t *testing.T) {
	cl := newCluster(t, 2, cachekit.TypedOptions{Local: &cachekit.LocalOptions{}, Backplane: cachekit.NewMemoryBackplane()})
	a, b := cl.typed[0], cl.typed[1]
	l := a.LocalTier()
	fill := func(k string, ttl time.Duration) {
		t.Helper()
		l.FillPrivate(k, "v", []byte("\xc1v"), ttl, l.Token(k))
		if _, _, ok := l.GetPrivate(k, time.Now()); !ok {
			t.Fatalf("%s not kept", k)
		}
	}
	gone := func(what, k string) {
		t.Helper()
		if _, _, ok := l.GetPrivate(k, time.Now()); ok {
			t.Errorf("the private entry of %s survived %s", k, what)
		}
	}
	fill("w", 0)
	a.Cache().Delete(ctx, "w")
	gone("a write through the Typed's Cache()", "w")
	fill("o", 0)
	b.Set(ctx, "o", "x")
	gone("another Typed's write", "o")
	fill("c", 0)
	b.Cache().Clear(ctx)
	gone("another Typed's Clear", "c")
	fill("e", 200*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	gone("its lifetime", "e")
	fill("x", 0)
	a.Close()
	gone("Typed.Close", "x")
	l.FillPrivate("y", "v", []byte("\xc1v"), 0, l.Token("y"))
	gone("Typed.Close (a fill after it)", "y")
}
