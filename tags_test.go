package cachekit_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
	"github.com/cachekit/cachekit/serializer"
)

// After InvalidateTags returns, a tagged entry is a miss for every Typed
// over the namespace: without local tiers, with local tiers and no
// backplane, and with local tiers and a backplane.
func TestInvalidateTagsAcrossTyped(t *testing.T) {
	for name, opts := range map[string]func() cachekit.TypedOptions{
		"plain":               func() cachekit.TypedOptions { return cachekit.TypedOptions{} },
		"local, no backplane": func() cachekit.TypedOptions { return cachekit.TypedOptions{Local: &cachekit.LocalOptions{}} },
		"local and backplane": func() cachekit.TypedOptions {
			return cachekit.TypedOptions{Local: &cachekit.LocalOptions{}, Backplane: cachekit.NewMemoryBackplane()}
		},
	} {
		t.Run(name, func(t *testing.T) {
			cl := newCluster(t, 3, opts())
			a, b, c := cl.typed[0], cl.typed[1], cl.typed[2]
			if err := a.Set(ctx, "p1", "one", cachekit.WithTags("products", "cat:1")); err != nil {
				t.Fatal(err)
			}
			if err := a.SetMany(ctx, map[string]string{"p2": "two", "p3": "three"}, cachekit.WithTags("products")); err != nil {
				t.Fatal(err)
			}
			if err := a.Add(ctx, "p4", "four", cachekit.WithTags("cat:1")); err != nil {
				t.Fatal(err)
			}
			_ = a.Set(ctx, "u", "untagged")
			for range 2 { // the second round from the local tiers, if any
				cl.want(t, "p1", "one")
				cl.want(t, "p2", "two")
				cl.want(t, "p4", "four")
				cl.want(t, "u", "untagged")
			}
			got, err := c.GetMany(ctx, []string{"p1", "p2", "p3", "p4", "u"})
			if err != nil || len(got) != 5 {
				t.Fatalf("GetMany = %v, %v", got, err)
			}

			if err := b.InvalidateTags(ctx, "products"); err != nil {
				t.Fatal(err)
			}
			tagMisses := len(cl.hooks[0].kinds(cachekit.EventTagMiss))
			cl.want(t, "p1", "")
			if n := len(cl.hooks[0].kinds(cachekit.EventTagMiss)); n != tagMisses+1 {
				t.Fatalf("%d tag_miss events for one read of an invalidated entry", n-tagMisses)
			}
			cl.want(t, "p2", "")
			cl.want(t, "p3", "")
			cl.want(t, "p4", "four") // cat:1 only
			cl.want(t, "u", "untagged")
			got, err = a.GetMany(ctx, []string{"p1", "p2", "p3", "p4", "u"})
			if err != nil || len(got) != 2 || got["p4"] != "four" || got["u"] != "untagged" {
				t.Fatalf("GetMany after InvalidateTags = %v, %v", got, err)
			}

			// GetOrLoad loads a tagged entry again, and a write after the
			// invalidation is not affected by it.
			loads := 0
			load := func(context.Context) (string, error) { loads++; return "reloaded", nil }
			for range 2 {
				v, err := c.GetOrLoad(ctx, "p1", load, cachekit.WithTags("products"))
				if err != nil || v != "reloaded" {
					t.Fatalf("GetOrLoad = %q, %v", v, err)
				}
				c.Wait()
			}
			if loads != 1 {
				t.Fatalf("%d loads, want 1", loads)
			}
			cl.want(t, "p1", "reloaded")
			if err := c.InvalidateTags(ctx, "cat:1", "products", "cat:1"); err != nil {
				t.Fatal(err)
			}
			cl.want(t, "p1", "")
			cl.want(t, "p4", "")
			cl.want(t, "u", "untagged")
		})
	}
}

// A value loaded while its tag is invalidated is stored, but as a miss:
// GetOrLoad read the tag's stamp before the load.
func TestInvalidateTagsDuringLoad(t *testing.T) {
	mem := memory.New(nil)
	defer mem.Close()
	a := cachekit.NewTyped[string](mem, nil)
	v, err := a.GetOrLoad(ctx, "k", func(ctx context.Context) (string, error) {
		if err := a.InvalidateTags(ctx, "t"); err != nil {
			return "", err
		}
		return "old data", nil
	}, cachekit.WithTags("t"))
	a.Wait()
	if err != nil || v != "old data" {
		t.Fatalf("GetOrLoad = %q, %v", v, err)
	}
	if _, err := a.Get(ctx, "k"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("Get of a value loaded during its tag's invalidation: %v, want a miss", err)
	}
}

func TestTagsInvalid(t *testing.T) {
	mem := memory.New(nil)
	defer mem.Close()
	a := cachekit.NewTyped[string](mem, nil)
	if err := a.Set(ctx, "k", "v", cachekit.WithTags("")); !errors.Is(err, cachekit.ErrInvalidKey) {
		t.Fatalf("Set with an empty tag: %v", err)
	}
	if err := a.InvalidateTags(ctx, strings.Repeat("t", cachekit.MaxKeySize)); !errors.Is(err, cachekit.ErrInvalidKey) {
		t.Fatalf("InvalidateTags with a tag too long: %v", err)
	}
	if err := a.InvalidateTags(ctx); err != nil {
		t.Fatalf("InvalidateTags of no tags: %v", err)
	}
}

// A stamp the cache lost (evicted) makes its entries misses.
func TestTagStampLostIsAMiss(t *testing.T) {
	mem := memory.New(nil)
	defer mem.Close()
	a := cachekit.NewTyped[string](mem, nil)
	_ = a.Set(ctx, "k", "v", cachekit.WithTags("t"))
	if v, err := a.Get(ctx, "k"); err != nil || v != "v" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if n, _ := mem.Delete(ctx, cachekit.TagKeyPrefix+"t"); n != 1 {
		t.Fatal("no stamp stored under TagKeyPrefix+tag")
	}
	if _, err := a.Get(ctx, "k"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("Get after the stamp was lost: %v, want a miss", err)
	}
}

// Untagged values are stored exactly as the serializer encodes them, so
// plain Cache users read them; tagged ones decode through Decode and
// Update.
func TestTagsInterop(t *testing.T) {
	mem := memory.New(nil)
	defer mem.Close()
	a := cachekit.NewTyped[string](mem, nil)
	_ = a.Set(ctx, "u", "plain")
	if b, _ := mem.Get(ctx, "u"); string(b) != `"plain"` {
		t.Fatalf("untagged bytes = %q", b)
	}
	_ = a.Set(ctx, "t", "tagged", cachekit.WithTags("x"))
	b, _ := mem.Get(ctx, "t")
	if v, err := a.Decode(b); err != nil || v != "tagged" {
		t.Fatalf("Decode of a tagged entry = %q, %v", v, err)
	}
	v, err := a.Update(ctx, "t", func(old string, found bool) (string, error) { return old + "!", nil })
	if err != nil || v != "tagged!" {
		t.Fatalf("Update of a tagged entry = %q, %v", v, err)
	}
	// Raw bytes that happen to start like a tagged entry round-trip.
	raw := cachekit.NewTyped[[]byte](mem, &cachekit.TypedOptions{Serializer: serializer.Raw{}})
	odd := []byte("\x00\xffck:tags\x00\x01\x01t\x01s")
	_ = raw.Set(ctx, "odd", odd)
	if got, err := raw.Get(ctx, "odd"); err != nil || string(got) != string(odd) {
		t.Fatalf("Get of raw bytes that look like an envelope = %q, %v", got, err)
	}
	// Encode escapes them as Set does: Decode, and Get of the bytes
	// stored as they are, return them intact.
	enc, err := raw.Encode(odd)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := raw.Decode(enc); err != nil || string(got) != string(odd) {
		t.Fatalf("Decode(Encode(%q)) = %q, %v", odd, got, err)
	}
	_ = mem.Set(ctx, "encoded", enc, 0)
	if got, err := raw.Get(ctx, "encoded"); err != nil || string(got) != string(odd) {
		t.Fatalf("Get of Encode's bytes = %q, %v; want %q", got, err, odd)
	}
}
