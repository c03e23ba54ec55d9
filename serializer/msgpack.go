package serializer

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// MsgPack is a Serializer that encodes values as MessagePack with
// github.com/vmihailenco/msgpack/v5. The zero value is ready to use and safe
// for concurrent use.
//
// MessagePack is smaller and faster than JSON and carries more of Go's
// types exactly: NaN and ±Inf, []byte as raw bytes rather than base64, and
// 64-bit integers, even when decoded into an interface.
//
// # Struct fields
//
// A field's msgpack tag names it; a field without one falls back to its json
// tag, then to the field name. So a struct annotated for encoding/json
// encodes under the same names, honouring `json:"-"` and `json:",omitempty"`,
// and embedded structs are flattened as encoding/json does. Integers are
// written in the fewest bytes that hold them.
//
// # What round-trips
//
//   - A nil slice or map decodes as nil; an empty one decodes as empty and
//     non-nil. A nil pointer decodes as nil.
//   - A time.Time keeps its instant (Equal holds) but not its Location:
//     it decodes in time.Local. The monotonic clock reading is dropped.
//   - Decoded into an interface (any, map[string]any), an integer comes
//     back as the narrowest Go type that msgpack v5 picks for its encoding
//     (int8, uint16, ...), a float32 as float32, a string as string and
//     binary as []byte. Decode into concrete types to get stable types.
//
// # Hostile input
//
// Unmarshal checks the whole input before the decoder sees it: every
// declared length must fit in the input, containers must nest at most
// MaxDepth deep, and exactly one value must be present with nothing after
// it. Input that fails is reported as ErrMalformed, and nothing is decoded.
// This matters because msgpack v5 on its own allocates from declared
// lengths: five bytes can make it ask for gigabytes, and deep nesting
// overflows the stack (vmihailenco/msgpack#401).
//
// Well-formed input can still make the decoder allocate far more than its
// size: each {"":nil} (3 bytes) decoded into an interface is a map of about
// 340 bytes, and each nil in an array decoded into a []T is a whole T. So
// Unmarshal also estimates, from the input and the destination's type,
// what decoding will allocate (slices, maps, strings, boxed values,
// pointees), and refuses input whose estimate exceeds AllocFactor (64)
// times len(data) plus AllocSlack (1 MiB), with an error matching
// ErrLimitExceeded and ErrMalformed; the fields of the same names adjust
// both. Ordinary values allocate a few times their encoding and are never
// refused; input under a few kilobytes is not even walked, as it cannot
// exceed AllocSlack.
//
// A value can still be much larger in memory than its encoding: each
// element of a slice takes its whole size in the slice's array, including
// fields that are not encoded (unexported, or tagged "-") and large arrays.
// Marshal runs the same estimate on its output, for a destination of v's
// type, and refuses with ErrLimitExceeded a value that Unmarshal would
// refuse, rather than writing bytes no reader can decode. Raise AllocFactor
// or AllocSlack, on writers and readers alike, to store such values.
//
// Unlike JSON, Marshal does not detect cyclic data structures: msgpack v5
// recurses through a cycle until the goroutine stack overflows, so do not
// cache values that point back into themselves.
type MsgPack struct {
	// MaxDepth is the deepest nesting of arrays and maps that Unmarshal
	// accepts and Marshal produces. Zero or negative means
	// DefaultMaxDepth (512).
	MaxDepth int

	// MaxSize is the largest encoding, in bytes, that Unmarshal accepts and
	// Marshal produces. Zero or negative means no limit beyond the input
	// itself: the checks already bound allocation by the input's size
	// (AllocFactor), so MaxSize is for callers who want a tighter bound.
	MaxSize int

	// AllocFactor and AllocSlack bound what Unmarshal may allocate: about
	// AllocFactor times the size of its input plus AllocSlack bytes, as
	// estimated from the input and the destination's type. Input over the
	// budget is refused, and Marshal refuses to produce it. Zero or
	// negative means the package's AllocFactor (64) and AllocSlack (1 MiB).
	//
	// Ordinary values stay far below the defaults. Raise them for values
	// that take much more memory than their encoding: elements with large
	// fields that are not encoded (unexported, or tagged "-") or large
	// arrays, whose every element costs its whole size in memory however
	// few bytes it encodes to. For example, a []T of 1000 elements where T
	// holds a [2048]byte scratch buffer and two small encoded fields
	// encodes to about 14-22 KB but decodes into arrays of several
	// megabytes. Set the same limits wherever the values are read: a
	// reader with lower limits refuses what a writer with higher ones
	// stored. The budget is what protects readers from hostile input, so
	// raise it by what such values need, not without bound.
	AllocFactor int
	AllocSlack  int
}

// pooledBufferLimit is the largest buffer (and the largest input a decoder
// has read) that goes back into a pool; bigger ones are left to the garbage
// collector so that one large value does not pin memory.
const pooledBufferLimit = 64 << 10

type msgpackEncoder struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

type msgpackDecoder struct {
	r     guardedReader
	traps []int
	dec   *msgpack.Decoder
}

var (
	msgpackEncoders = sync.Pool{New: func() any {
		return &msgpackEncoder{enc: msgpack.NewEncoder(nil)}
	}}
	msgpackDecoders = sync.Pool{New: func() any {
		return &msgpackDecoder{dec: msgpack.NewDecoder(nil)}
	}}
)

func (m MsgPack) maxDepth() int {
	if m.MaxDepth <= 0 {
		return DefaultMaxDepth
	}
	return m.MaxDepth
}

// Marshal returns the MessagePack encoding of v.
//
// It fails with ErrLimitExceeded if the encoding is larger than MaxSize,
// nests deeper than MaxDepth, or would make Unmarshal into a value of v's
// type allocate more than the AllocFactor and AllocSlack budget, since
// Unmarshal would refuse it. (That estimate is for a destination of v's
// type; decoding into an interface instead, as a Typed[any] does,
// allocates differently, which Marshal cannot see.)
func (m MsgPack) Marshal(v any) ([]byte, error) {
	e := msgpackEncoders.Get().(*msgpackEncoder)
	e.buf.Reset()
	// Reset also clears any flag a custom EncodeMsgpack method may have
	// changed on a previous use.
	e.enc.Reset(&e.buf)
	e.enc.SetCustomStructTag("json")
	e.enc.UseCompactInts(true)
	err := e.enc.Encode(v)
	var out []byte
	if err == nil {
		out = bytes.Clone(e.buf.Bytes())
	}
	e.enc.Reset(nil)
	if e.buf.Cap() <= pooledBufferLimit {
		msgpackEncoders.Put(e)
	}
	if err != nil {
		return nil, fmt.Errorf("serializer: %w", err)
	}

	if m.MaxSize > 0 && len(out) > m.MaxSize {
		return nil, limitOnEncode("msgpack", "encoding of "+strconv.Itoa(len(out))+
			" bytes exceeds MaxSize "+strconv.Itoa(m.MaxSize))
	}
	// The check costs little next to encoding, and it turns a value that
	// would be written but could never be read back into an error now.
	if _, err := checkMsgpack(out, m.maxDepth(), nil); err != nil {
		if errors.Is(err, ErrLimitExceeded) {
			return nil, limitOnEncode("msgpack", "value nests deeper than MaxDepth "+strconv.Itoa(m.maxDepth()))
		}
		return nil, fmt.Errorf("serializer: msgpack: encoder produced input its decoder rejects: %w", err)
	}
	if err := checkEncodedCost(fmtMsgpack, out, v, limitsOf(m.AllocFactor, m.AllocSlack)); err != nil {
		return nil, err
	}
	return out, nil
}

// Unmarshal decodes the MessagePack value in data into v, which must be a
// non-nil pointer.
//
// data must hold exactly one well-formed value within MaxDepth and MaxSize;
// otherwise Unmarshal returns an error matching ErrMalformed and leaves v
// untouched. Unmarshal does not retain data.
//
// Unmarshal never panics: a panic inside the decoder, which msgpack v5
// raises for some well-formed input that does not fit the destination (for
// example an array as the key of a map[any]any), or inside a custom
// DecodeMsgpack method, is recovered and returned as an error. (cachekit's
// Typed relies on it, and calls MsgPack without a recover of its own.)
func (m MsgPack) Unmarshal(data []byte, v any) (err error) {
	if m.MaxSize > 0 && len(data) > m.MaxSize {
		return limitOnDecode("msgpack", "input of "+strconv.Itoa(len(data))+
			" bytes exceeds MaxSize "+strconv.Itoa(m.MaxSize))
	}

	d := msgpackDecoders.Get().(*msgpackDecoder)
	// The one recover covers the whole decode: a panic in the decoder,
	// which msgpack v5 raises for some well-formed input that does not fit
	// the destination (or in a custom DecodeMsgpack method), and in any of
	// the checks (none is known) becomes an error. So callers need no
	// recover of their own (see the init function above).
	defer func() {
		if r := recover(); r != nil {
			// The decoder's state is unknown: do not pool it.
			d.r.reset(nil, nil)
			err = fmt.Errorf("serializer: msgpack: decoder panicked: %v", r)
		}
	}()
	d.traps, err = checkMsgpack(data, m.maxDepth(), d.traps[:0])
	if err != nil {
		msgpackDecoders.Put(d)
		return err
	}

	l := limitsOf(m.AllocFactor, m.AllocSlack)
	if sh := shapeOf(v, fmtMsgpack); sh.mayExceedSlack(len(data), l.slack) {
		if cost := msgpackShapeCost(data, sh); cost > l.budget(len(data)) {
			msgpackDecoders.Put(d)
			return limitOnDecode("msgpack", formatAlloc(cost, len(data), l))
		}
	}

	d.r.reset(data, d.traps)
	// Reset also clears any flag a custom DecodeMsgpack method may have
	// changed on a previous use.
	d.dec.Reset(&d.r)
	d.dec.SetCustomStructTag("json")

	err = d.dec.Decode(v)
	if err == nil && d.r.pos != len(data) {
		// The decoder read the input differently from checkMsgpack, which
		// found exactly one value there. Every such path found so far is
		// closed; this reports any other instead of trusting the result.
		err = malformed("msgpack", "decoder stopped at offset "+strconv.Itoa(d.r.pos)+" of "+
			strconv.Itoa(len(data)), errDiverged)
	}

	// The decoder keeps reading from d.r, which no longer holds data.
	d.r.reset(nil, nil)
	// The decoder keeps a scratch buffer as large as the longest string it
	// has read; only small ones are worth keeping.
	if len(data) <= pooledBufferLimit && cap(d.traps) <= 1024 {
		msgpackDecoders.Put(d)
	}
	if err != nil {
		var ce *codecError
		if errors.As(err, &ce) {
			return ce // a trap in guardedReader
		}
		return fmt.Errorf("serializer: %w", err)
	}
	return nil
}
