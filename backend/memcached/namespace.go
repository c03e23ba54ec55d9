package memcached

import "github.com/cachekit/cachekit"

var _ cachekit.Namespacer = (*Cache)(nil)

// Namespace names the cache's namespace, implementing cachekit.Namespacer
// so that invalidations on a cachekit.Backplane name it: "" without a
// namespace, Options.Namespace itself when memcached keys can hold it as
// it is (1 to 64 printable ASCII bytes without ':' or '~', not starting with
// '='), and otherwise the form the server keys use, "=" and the base64url
// SHA-256 of the namespace, the same in every process and different for
// every namespace.
func (c *Cache) Namespace() string { return c.nsPart }
