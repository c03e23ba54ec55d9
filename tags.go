package cachekit

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
)

// TagKeyPrefix starts the keys under which tags keep their stamps in the
// shared cache, one key per tag: TagKeyPrefix + tag. Keys with this prefix
// are reserved for tags.
const TagKeyPrefix = "__cachekit:tag:"

// tagMagic starts the bytes of an entry written with tags (an envelope):
// neither JSON nor a msgpack encoding of one value begins with it.
const tagMagic = "\x00\xffck:tags\x00"

// WithTags attaches tags to the entries one write stores (Set, SetMany,
// Add, GetOrLoad's write of the loaded value), so that
// [Typed.InvalidateTags] with any of them makes those entries misses.
// Tags are non-empty strings; each costs a key of TagKeyPrefix + tag in
// the cache, so a tag is at most MaxKeySize-len(TagKeyPrefix) bytes.
//
// See [Typed.InvalidateTags] for how tags are stored and what they cost.
func WithTags(tags ...string) SetOption {
	return func(o *setOptions) { o.tags = append(o.tags, tags...) }
}

// InvalidateTags makes every entry written with one of tags a miss: once it
// returns, a read of such an entry through any Typed over the same
// namespace, in any process, misses, with or without a local tier or a
// backplane, and GetOrLoad loads it afresh. Entries written with tags after
// InvalidateTags returns are not affected. It costs one write of one key
// per tag (one SetMany), whatever the number of entries, and a publish on
// the Typed's Backplane, if any.
//
// How it works: each tag has a stamp, a random value kept in the shared
// cache under TagKeyPrefix + tag with no expiry. A write with tags reads the
// current stamps (one GetMany, plus an Add for a tag that has none yet) and
// stores them beside the value, in an envelope; a read of such an entry
// reads the tags' current stamps (one GetMany more: tagged entries cost an
// extra round trip to read, untagged ones nothing) and treats any
// difference, or a missing stamp, as a miss. InvalidateTags replaces the
// stamps. The entry itself stays in the cache until it expires or is
// overwritten.
//
// Races: a write with tags that overlaps InvalidateTags of one of its tags
// may be stored with the stamp that InvalidateTags replaced, and is then a
// miss: an invalidation never lets an older value through, at worst it
// drops a newer one. GetOrLoad reads the stamps before it calls its loader,
// so a value loaded while its tag was invalidated is a miss too. A stamp
// that the cache evicts (memory pressure) makes its tag's entries misses,
// as if it had been invalidated.
//
// Local tiers: a Typed with a Local tier keeps tagged entries in process
// memory only when it has a Backplane; InvalidateTags publishes on its
// Backplane, and every Typed that receives the message drops the local
// entries of those tags. A Typed with a Local tier and no Backplane reads
// tagged entries from the cache every time. Every Typed that keeps tagged
// entries locally must therefore share the Backplane of the Typed that
// invalidates the tags (in tracking mode, the stamp's write is the
// message).
//
// Tagged entries are stored in an envelope that starts with bytes neither
// JSON nor msgpack produce; a plain Cache.Get returns the envelope, and
// Typed.Decode decodes it. Update checks the stamps as Get does (a value
// whose tag was invalidated is a miss to its function) and stores its
// result with the tags that WithTags gives, and only those.
func (t *Typed[V]) InvalidateTags(ctx context.Context, tags ...string) error {
	tags = dedupe(tags)
	if len(tags) == 0 {
		return nil
	}
	keys, err := tagKeys(tags)
	if err != nil {
		return &Error{Op: "InvalidateTags", Err: err}
	}
	stamp := []byte(newStamp())
	items := make(map[string][]byte, len(keys))
	for _, k := range keys {
		items[k] = stamp
	}
	err = t.base.SetMany(ctx, items, 0)
	if co := t.co; co != nil {
		co.endTags(tags)
		if wroteSome(err) {
			co.publish(ctx, false, keys...)
		}
	}
	return WrapError("InvalidateTags", "", err)
}

func newStamp() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	return hex.EncodeToString(b[:])
}

func dedupe(tags []string) []string {
	if len(tags) <= 1 {
		return tags
	}
	out := make([]string, 0, len(tags))
outer:
	for _, t := range tags {
		for _, o := range out {
			if o == t {
				continue outer
			}
		}
		out = append(out, t)
	}
	return out
}

// tagKeys returns the stamp keys of tags.
func tagKeys(tags []string) ([]string, error) {
	keys := make([]string, len(tags))
	for i, t := range tags {
		if t == "" {
			return nil, fmt.Errorf("%w: empty tag", ErrInvalidKey)
		}
		keys[i] = TagKeyPrefix + t
		if err := CheckKey(keys[i]); err != nil {
			return nil, fmt.Errorf("%w: tag of %d bytes", err, len(t))
		}
	}
	return keys, nil
}

// cutTagKey reports whether key is a tag's stamp key, and which tag's.
func cutTagKey(key string) (string, bool) {
	return strings.CutPrefix(key, TagKeyPrefix)
}

// stamps returns the current stamps of tags, creating those that have none.
func (t *Typed[V]) stamps(ctx context.Context, tags []string) ([]string, error) {
	keys, err := tagKeys(tags)
	if err != nil {
		return nil, err
	}
	cur, err := t.base.GetMany(ctx, keys)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(keys))
	for i, k := range keys {
		if b, ok := cur[k]; ok {
			out[i] = string(b)
			continue
		}
		// No stamp yet (or evicted): make one. Add is atomic, so writers
		// racing here agree on one stamp.
		for attempt := 0; ; attempt++ {
			s := newStamp()
			err := t.base.Add(ctx, k, []byte(s), 0)
			if err == nil {
				out[i] = s
				break
			}
			if !errors.Is(err, ErrExists) || attempt == 2 {
				return nil, err
			}
			b, err := t.base.Get(ctx, k)
			if err == nil {
				out[i] = string(b)
				break
			}
			if !errors.Is(err, ErrNotFound) {
				return nil, err
			}
		}
	}
	return out, nil
}

// envelope wraps payload with tags and their stamps.
func envelope(payload []byte, tags, stamps []string) []byte {
	n := len(tagMagic) + binary.MaxVarintLen64 + len(payload)
	for i := range tags {
		n += 2*binary.MaxVarintLen64 + len(tags[i]) + len(stamps[i])
	}
	b := make([]byte, 0, n)
	b = append(b, tagMagic...)
	b = binary.AppendUvarint(b, uint64(len(tags)))
	for i := range tags {
		b = binary.AppendUvarint(b, uint64(len(tags[i])))
		b = append(b, tags[i]...)
		b = binary.AppendUvarint(b, uint64(len(stamps[i])))
		b = append(b, stamps[i]...)
	}
	return append(b, payload...)
}

// isEnvelope reports whether b starts like an envelope.
func isEnvelope(b []byte) bool {
	return len(b) >= len(tagMagic) && string(b[:len(tagMagic)]) == tagMagic
}

// stored returns the bytes to store for an encoded value: the value itself
// when untagged (in an envelope without tags in the unlikely case that it
// starts like one), else an envelope.
func stored(b []byte, tags, stamps []string) []byte {
	if len(tags) == 0 && !isEnvelope(b) {
		return b
	}
	return envelope(b, tags, stamps)
}

// openEnvelope returns the payload, tags and stamps of an envelope; ok is
// false when b is not a well-formed envelope (then b is a plain value).
func openEnvelope(b []byte) (payload []byte, tags, stamps []string, ok bool) {
	if !isEnvelope(b) {
		return b, nil, nil, false
	}
	r := b[len(tagMagic):]
	next := func() (string, bool) {
		n, w := binary.Uvarint(r)
		if w <= 0 || n > uint64(len(r)-w) {
			return "", false
		}
		s := string(r[w : w+int(n)])
		r = r[w+int(n):]
		return s, true
	}
	count, w := binary.Uvarint(r)
	if w <= 0 || count > uint64(len(r)) {
		return b, nil, nil, false
	}
	r = r[w:]
	for range count {
		tag, ok1 := next()
		stamp, ok2 := next()
		if !ok1 || !ok2 {
			return b, nil, nil, false
		}
		tags = append(tags, tag)
		stamps = append(stamps, stamp)
	}
	return r, tags, stamps, true
}

// tagged is a read entry that carries tags.
type tagged struct {
	tags, stamps []string
}

// checkTags reports which of entries are still valid: those whose stamps
// all equal the current ones, read with one GetMany.
func (t *Typed[V]) checkTags(ctx context.Context, entries map[string]tagged) (map[string]bool, error) {
	var keys []string
	seen := map[string]bool{}
	for _, e := range entries {
		for _, tag := range e.tags {
			if !seen[tag] {
				seen[tag] = true
				keys = append(keys, TagKeyPrefix+tag)
			}
		}
	}
	var cur map[string][]byte
	if len(keys) > 0 {
		var err error
		if cur, err = t.base.GetMany(ctx, keys); err != nil {
			return nil, err
		}
	}
	valid := make(map[string]bool, len(entries))
	for k, e := range entries {
		ok := true
		for i, tag := range e.tags {
			s, found := cur[TagKeyPrefix+tag]
			if !found || string(s) != e.stamps[i] {
				ok = false
				break
			}
		}
		valid[k] = ok
	}
	return valid, nil
}
