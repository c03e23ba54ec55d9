package memcached

import (
	"strings"
	"testing"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachekit/cachekit"
)

// No server is needed: New does not connect.
func TestNamespace(t *testing.T) {
	client := memcache.New("127.0.0.1:1")
	seen := map[string]string{}
	for _, ns := range []string{"", "app", "a b", "a:b", "=x", strings.Repeat("n", 65), strings.Repeat("n", 66)} {
		c := New(client, &Options{Namespace: ns})
		got := cachekit.NamespaceOf(cachekit.WithHooks(c, cachekit.EventHookFunc(nil)))
		if ns == "app" && got != "app" {
			t.Errorf("Namespace() of %q = %q", ns, got)
		}
		if ns == "" && got != "" {
			t.Errorf("Namespace() without a namespace = %q", got)
		}
		if again := New(client, &Options{Namespace: ns}).Namespace(); again != got {
			t.Errorf("Namespace() of %q not stable: %q then %q", ns, got, again)
		}
		if prev, dup := seen[got]; dup {
			t.Errorf("namespaces %q and %q both name themselves %q", prev, ns, got)
		}
		seen[got] = ns
		_ = c.Close()
	}
}
