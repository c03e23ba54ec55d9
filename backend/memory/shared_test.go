package memory_test

import (
	"context"
	"testing"

	"github.com/cachekit/cachekit/backend/memory"
)

// TestGetSharedNoCopy checks that GetShared returns the stored bytes
// themselves: two reads share one array, a read allocates nothing, and Get
// still returns a copy of its own.
func TestGetSharedNoCopy(t *testing.T) {
	ctx := context.Background()
	for _, ns := range []string{"", "other"} {
		root := memory.New(nil)
		defer root.Close()
		c := root.WithNamespace(ns) // "other": keys stored with a prefix
		if err := c.Set(ctx, "k", []byte("value"), 0); err != nil {
			t.Fatal(err)
		}
		a, err := c.GetShared(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		b, err := c.GetShared(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		if &a[0] != &b[0] {
			t.Errorf("namespace %q: two GetShared calls returned different arrays; want the stored bytes themselves", ns)
		}
		g, err := c.Get(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		if &g[0] == &a[0] {
			t.Errorf("namespace %q: Get returned the stored bytes; want a copy", ns)
		}
		if ns != "" {
			continue // the prefixed key is built per call (see WithNamespace)
		}
		if n := testing.AllocsPerRun(1000, func() {
			if _, err := c.GetShared(ctx, "k"); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("GetShared allocates %v times per call; want 0", n)
		}
	}
}
