package redis

import (
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
)

// No server is needed: New does not connect.
func TestNamespace(t *testing.T) {
	client := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"})
	defer client.Close()
	for _, ns := range []string{"", "app", "a:b", "100%", "%3A", "x%25:y", "{app}"} {
		c := New(client, &Options{Namespace: ns})
		if got := cachekit.NamespaceOf(c); got != ns {
			t.Errorf("Namespace() of %q = %q (prefix %q)", ns, got, c.prefix)
		}
		if got := cachekit.NamespaceOf(cachekit.WithHooks(c, cachekit.EventHookFunc(nil))); got != ns {
			t.Errorf("NamespaceOf(WithHooks(%q)) = %q", ns, got)
		}
		_ = c.Close()
	}
}
