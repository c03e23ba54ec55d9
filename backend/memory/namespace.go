package memory

import "github.com/cachekit/cachekit"

var _ cachekit.Namespacer = (*Cache)(nil)

// Namespace returns the namespace of c: Options.Namespace for a cache made
// by New, ns for one made by WithNamespace(ns). It implements
// cachekit.Namespacer, so that invalidations on a cachekit.Backplane name
// it.
func (c *Cache) Namespace() string { return c.ns }
