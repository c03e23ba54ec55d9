package serializer

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// JSON is a Serializer that encodes values with encoding/json. The zero value
// is ready to use and safe for concurrent use. It is the serializer cachekit
// uses when none is configured.
//
// JSON is readable by any language and by people, at the cost of size and
// speed next to MsgPack, and of some of Go's types.
//
// # What round-trips
//
//   - A nil slice or map encodes as null and decodes as nil; an empty one
//     encodes as [] or {} and decodes as empty and non-nil. A nil []byte
//     decodes as nil, an empty one as empty.
//   - NaN and ±Inf cannot be represented: Marshal fails on them rather than
//     losing them.
//   - A time.Time keeps its instant (Equal holds) and its offset from UTC,
//     but not the name of its Location. The monotonic clock reading is
//     dropped.
//   - Decoded into an interface (any, map[string]any), every number comes
//     back as float64, which is exact only up to 2^53. Decode into concrete
//     types to keep int64 and uint64 exact.
//
// # Hostile input
//
// Before decoding, Unmarshal rejects input larger than MaxSize, input
// nested deeper than MaxDepth, and input whose decoding into v's type would
// allocate more than AllocFactor (64) times its size plus AllocSlack
// (1 MiB), both adjustable with the fields of the same names: a walk over
// the bytes estimates what encoding/json will allocate (each [] or {} in an
// interface is a slice or map of its own, and a slice grows one element at
// a time, every array along the way counted). Then encoding/json rejects
// anything that is not exactly one well-formed JSON value. All of these are
// reported as ErrMalformed (the limits also as ErrLimitExceeded), and v is
// left untouched.
//
// Marshal runs the same estimate on its output, for a destination of v's
// type, and refuses with ErrLimitExceeded what Unmarshal would refuse: a
// slice of elements that are much larger in memory than in JSON (large
// unexported or `json:"-"` fields, large arrays) can exceed the budget with
// a few thousand elements. Raise AllocFactor or AllocSlack, on writers and
// readers alike, to store such values.
type JSON struct {
	// MaxDepth is the deepest nesting of arrays and objects that Unmarshal
	// accepts and Marshal produces. Zero or negative means DefaultMaxDepth
	// (512).
	MaxDepth int

	// MaxSize is the largest encoding, in bytes, that Unmarshal accepts and
	// Marshal produces. Zero or negative means no limit beyond the input
	// itself.
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

func (j JSON) maxDepth() int {
	if j.MaxDepth <= 0 {
		return DefaultMaxDepth
	}
	return j.MaxDepth
}

// Marshal returns the JSON encoding of v, as json.Marshal does.
//
// It fails, rather than losing data, on values JSON cannot hold: NaN and ±Inf
// (a *json.UnsupportedValueError), and channels, functions and complex
// numbers (matching ErrUnsupportedType). It fails with ErrLimitExceeded if the
// encoding is larger than MaxSize, nests deeper than MaxDepth, or would make
// Unmarshal into a value of v's type allocate more than the AllocFactor and
// AllocSlack budget, since Unmarshal would refuse it. (That estimate is for
// a destination of v's type; decoding into an interface instead, as a
// Typed[any] does, allocates differently, which Marshal cannot see.)
func (j JSON) Marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		var ute *json.UnsupportedTypeError
		if errors.As(err, &ute) {
			return nil, &codecError{format: "json", msg: "cannot marshal", err: err, unsupported: true}
		}
		return nil, fmt.Errorf("serializer: %w", err)
	}
	if j.MaxSize > 0 && len(b) > j.MaxSize {
		return nil, limitOnEncode("json", "encoding of "+strconv.Itoa(len(b))+
			" bytes exceeds MaxSize "+strconv.Itoa(j.MaxSize))
	}
	if jsonTooDeep(b, j.maxDepth()) >= 0 {
		return nil, limitOnEncode("json", "value nests deeper than MaxDepth "+strconv.Itoa(j.maxDepth()))
	}
	if err := checkEncodedCost(fmtJSON, b, v, limitsOf(j.AllocFactor, j.AllocSlack)); err != nil {
		return nil, err
	}
	return b, nil
}

// Unmarshal decodes the JSON value in data into v, which must be a non-nil
// pointer, as json.Unmarshal does.
//
// data must hold exactly one well-formed JSON value (surrounding white space
// allowed) within MaxDepth and MaxSize; otherwise Unmarshal returns an error
// matching ErrMalformed and leaves v untouched. A well-formed value that does
// not fit v's type returns the *json.UnmarshalTypeError from encoding/json,
// and, as there, v may be partly filled. Unmarshal does not retain data.
func (j JSON) Unmarshal(data []byte, v any) error {
	if j.MaxSize > 0 && len(data) > j.MaxSize {
		return limitOnDecode("json", "input of "+strconv.Itoa(len(data))+
			" bytes exceeds MaxSize "+strconv.Itoa(j.MaxSize))
	}
	maxDepth := j.maxDepth()
	if off := jsonTooDeep(data, maxDepth); off >= 0 {
		return limitOnDecode("json", "nested deeper than MaxDepth "+strconv.Itoa(maxDepth)+" at offset "+strconv.Itoa(off))
	}
	l := limitsOf(j.AllocFactor, j.AllocSlack)
	if sh := shapeOf(v, fmtJSON); sh.mayExceedSlack(len(data), l.slack) {
		if cost := jsonShapeCost(data, sh); cost > l.budget(len(data)) {
			return limitOnDecode("json", formatAlloc(cost, len(data), l))
		}
	}
	if err := json.Unmarshal(data, v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return malformed("json", "at offset "+strconv.FormatInt(se.Offset, 10), err)
		}
		return fmt.Errorf("serializer: %w", err)
	}
	return nil
}

// jsonTooDeep returns the offset of the first '[' or '{' in data that opens
// a container more than maxDepth deep, or -1 if there is none.
//
// It counts brackets outside strings and does not otherwise check the
// syntax, which json.Unmarshal does next; on malformed input its answer only
// has to be safe, not meaningful. It does not allocate, and it is skipped for
// input too short to nest that deep.
func jsonTooDeep(data []byte, maxDepth int) int {
	if len(data) <= maxDepth {
		return -1
	}
	depth := 0
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '"':
			// Skip to the closing quote, stepping over escapes.
			for i++; i < len(data); i++ {
				if c := data[i]; c == '\\' {
					i++
				} else if c == '"' {
					break
				}
			}
		case '[', '{':
			depth++
			if depth > maxDepth {
				return i
			}
		case ']', '}':
			depth--
		}
	}
	return -1
}
