package redis

import (
	"strings"

	"github.com/cachekit/cachekit"
)

var _ cachekit.Namespacer = (*Cache)(nil)

// Namespace returns Options.Namespace, as the cache was made with ("" for
// none). It implements cachekit.Namespacer, so that invalidations on a
// cachekit.Backplane name it. The keys of the namespace are stored behind
// its encoded prefix (see Options.Namespace); Namespace undoes the encoding.
func (c *Cache) Namespace() string {
	if c.prefix == "" {
		return ""
	}
	ns := strings.TrimSuffix(c.prefix, ":")
	if !strings.Contains(ns, "%") {
		return ns
	}
	// namespacePrefix writes ':' as %3A and '%' as %25, and nothing else.
	return strings.NewReplacer("%3A", ":", "%25", "%").Replace(ns)
}
