package serializer

import (
	"sync/atomic"
	"unsafe"

	"github.com/cachekit/cachekit/internal/shareddecode"
)

// This file lets MsgPack skip checkMsgpack for input it has checked before,
// when that input is known never to change: the bytes a
// cachekit.SharedGetter returns, which cachekit's Typed decodes in place.
// A cache serves the same stored bytes to every read of a key until the key
// is written again, so the bytes of a popular key are checked once rather
// than on every read.
//
// Bytes are recognised by identity, not by content: an input is the same
// as one checked before if it starts at the same address and has the same
// length. Each remembered entry holds the checked slice itself, so its
// memory stays allocated while the entry exists and no other bytes can be
// placed at that address; and the bytes, being immutable, still hold what
// was checked. Public Unmarshal never consults or fills the table, as its
// caller may modify its input between calls.
//
// The table is direct-mapped and bounded: checkedSlots entries, each
// holding at most checkedMaxLen bytes alive (4 MiB in all) beyond what the
// cache itself holds; a newer input replaces whatever shares its slot.

const (
	checkedBits   = 12
	checkedSlots  = 1 << checkedBits
	checkedMaxLen = 1 << 10
)

// checkedInput is an input that passed checkMsgpack with maxDepth and
// needed no traps.
type checkedInput struct {
	data     []byte
	maxDepth int
}

var checkedInputs [checkedSlots]atomic.Pointer[checkedInput]

// checkedSlot returns the slot of the table where data is remembered, or
// nil if data is not worth remembering: empty, or longer than
// checkedMaxLen.
func checkedSlot(data []byte) *atomic.Pointer[checkedInput] {
	if len(data) == 0 || len(data) > checkedMaxLen {
		return nil
	}
	// Fibonacci hashing of the address spreads allocations of one size
	// class, which are evenly spaced, over the whole table.
	a := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(data))))
	return &checkedInputs[((a^uint64(len(data)))*0x9e3779b97f4a7c15)>>(64-checkedBits)]
}

// holds reports whether c is data itself (same address and length, so the
// same bytes) and was checked with maxDepth.
func (c *checkedInput) holds(data []byte, maxDepth int) bool {
	return c != nil && len(c.data) == len(data) && unsafe.SliceData(c.data) == unsafe.SliceData(data) &&
		c.maxDepth == maxDepth
}

// unmarshalImmutable is Unmarshal for input that never changes (see the
// top of this file): it checks data only the first time it sees it. Like
// Unmarshal, it returns a panic as an error, so Typed calls it without a
// recover of its own.
func (m MsgPack) unmarshalImmutable(data []byte, v any) error {
	return m.unmarshal(data, v, true)
}

func init() {
	shareddecode.Register(func(ser any) shareddecode.Func {
		switch m := ser.(type) {
		case MsgPack:
			return m.unmarshalImmutable
		case *MsgPack:
			if m != nil {
				// Read *m on every call, as m.Unmarshal does.
				return func(data []byte, v any) error { return m.unmarshalImmutable(data, v) }
			}
		}
		return nil
	})
}
