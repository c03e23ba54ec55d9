package serializer

import "errors"

// DefaultMaxDepth is the nesting depth JSON and MsgPack accept when their
// MaxDepth field is zero or negative.
//
// Depth counts open containers: a scalar has depth 0, [] and [1] have depth
// 1, and [[1]] has depth 2. In MessagePack a map key that is itself a
// container counts like a value. 512 levels is far beyond what real cached
// data uses, and far below what overflows a goroutine stack.
const DefaultMaxDepth = 512

// ErrMalformed reports that the bytes handed to Unmarshal are not a single,
// complete, well-formed value in the serializer's format, or that they exceed
// the serializer's MaxDepth or MaxSize.
//
// It covers everything that garbage, truncated or hostile input produces:
// syntax errors, truncation, trailing bytes, declared lengths that the input
// cannot hold, and nesting that is too deep. A well-formed value of the wrong
// shape for the destination (a string where the destination is an int) is a
// different error, returned as the underlying library reports it.
//
// Test for it with errors.Is. The underlying error, when there is one (for
// example a *json.SyntaxError), stays reachable with errors.As.
var ErrMalformed = errors.New("serializer: malformed input")

// ErrLimitExceeded reports that a value is nested deeper than MaxDepth, is
// larger than MaxSize, or would make the decoder allocate more than
// AllocFactor times its size plus AllocSlack (the fields of JSON and
// MsgPack, or the package defaults when they are zero).
//
// Unmarshal returns it together with ErrMalformed, so errors.Is matches both.
// Marshal returns it alone: JSON and MsgPack refuse to produce bytes that
// their own Unmarshal, with the same settings, would reject when decoding
// into a value of the type Marshal was given. A value can need more than
// the default allocation budget when it takes much more memory than its
// encoding (a slice of structs with large fields that are not encoded);
// its error names AllocFactor and AllocSlack, which must then be raised
// for its writers and readers alike.
var ErrLimitExceeded = errors.New("serializer: limit exceeded")

// ErrUnsupportedType reports a value or destination whose type the
// serializer cannot handle, such as an int handed to Raw, or a channel
// handed to JSON.
var ErrUnsupportedType = errors.New("serializer: unsupported type")

// codecError is the error JSON and MsgPack return for malformed input and
// exceeded limits. It matches ErrMalformed (decoding), ErrLimitExceeded
// (limits) and ErrUnsupportedType with errors.Is, and unwraps to the underlying library error.
type codecError struct {
	format    string // "json" or "msgpack"
	msg       string
	err       error // underlying error; may be nil
	malformed bool  // matches ErrMalformed
	limit     bool  // matches ErrLimitExceeded

	unsupported bool // matches ErrUnsupportedType
}

func (e *codecError) Error() string {
	s := "serializer: " + e.format + ": " + e.msg
	if e.err != nil {
		s += ": " + e.err.Error()
	}
	return s
}

func (e *codecError) Unwrap() error { return e.err }

func (e *codecError) Is(target error) bool {
	return (e.malformed && target == ErrMalformed) ||
		(e.limit && target == ErrLimitExceeded) ||
		(e.unsupported && target == ErrUnsupportedType)
}

func malformed(format, msg string, err error) error {
	return &codecError{format: format, msg: "malformed input: " + msg, err: err, malformed: true}
}

func limitOnDecode(format, msg string) error {
	return &codecError{format: format, msg: "malformed input: " + msg, malformed: true, limit: true}
}

func limitOnEncode(format, msg string) error {
	return &codecError{format: format, msg: msg, limit: true}
}
