package redis

import "strings"

// namespacePrefix returns the prefix of every key of namespace ns: ns with
// its ':' written as "%3A" and its '%' as "%25", then ":".
//
// The encoded namespace holds no ':', so the first ':' of a stored key ends
// its namespace, and the encoding is one-to-one: two different namespaces
// never share a key, and no namespace's prefix starts another namespace's
// key. (Without the encoding, namespace "a" with key "b:k" would be
// namespace "a:b" with key "k", and Clear on "a" would remove "a:b"'s keys.)
// Namespaces without ':' or '%' are stored as they are.
func namespacePrefix(ns string) string {
	if !strings.ContainsAny(ns, ":%") {
		return ns + ":"
	}
	var b strings.Builder
	b.Grow(len(ns) + 8)
	for i := 0; i < len(ns); i++ {
		switch c := ns[i]; c {
		case ':':
			b.WriteString("%3A")
		case '%':
			b.WriteString("%25")
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte(':')
	return b.String()
}

// key returns the Redis key for the user's key.
func (c *Cache) key(k string) string {
	if c.prefix == "" {
		return k
	}
	return c.prefix + k
}

// wireKeys returns the Redis keys for the user's keys. With a namespace the
// keys are built in one string and sliced from it: one allocation, not one
// per key.
func (c *Cache) wireKeys(keys []string) []string {
	if c.prefix == "" {
		return keys
	}
	n := 0
	for _, k := range keys {
		n += len(c.prefix) + len(k)
	}
	var b strings.Builder
	b.Grow(n)
	for _, k := range keys {
		b.WriteString(c.prefix)
		b.WriteString(k)
	}
	all := b.String()
	out := make([]string, len(keys))
	off := 0
	for i, k := range keys {
		end := off + len(c.prefix) + len(k)
		out[i] = all[off:end]
		off = end
	}
	return out
}

// bySlot groups indexes into wire (Redis keys) by cluster hash slot.
func bySlot(wire []string) map[uint16][]int {
	groups := make(map[uint16][]int)
	for i, k := range wire {
		s := slot(k)
		groups[s] = append(groups[s], i)
	}
	return groups
}
