package memory_test

import (
	"testing"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
)

func TestNamespace(t *testing.T) {
	c := memory.New(&memory.Options{Namespace: "app"})
	defer c.Close()
	for _, tc := range []struct {
		c    cachekit.Cache
		want string
	}{
		{c, "app"},
		{c.WithNamespace("users"), "users"},
		{c.WithNamespace(""), ""},
		{cachekit.WithHooks(c.WithNamespace("a:b"), cachekit.EventHookFunc(nil)), "a:b"},
	} {
		if got := cachekit.NamespaceOf(tc.c); got != tc.want {
			t.Errorf("NamespaceOf = %q, want %q", got, tc.want)
		}
	}
}
