// Package safedecode lets cachekit's Typed decode without a deferred
// recover of its own when its serializer already returns panics as errors.
//
// Typed promises that a value that cannot be decoded is an error, never a
// panic, whatever the Serializer does; so it calls Unmarshal under a
// deferred recover, which costs about 4% of a Get of a small value.
// serializer.MsgPack recovers inside Unmarshal already. The serializer
// package registers here which of its serializers do so, and Typed asks
// for them when it is made. It is internal so that the promise stays
// between the two packages of this module.
package safedecode

// Func decodes data into v, as the serializer's Unmarshal does, and never
// panics: a panic while decoding (in the decoder, or in a custom decoding
// method of the destination) is returned as an error.
type Func func(data []byte, v any) error

// lookup is set by Register, during the initialization of the serializer
// package, and only read afterwards.
var lookup func(ser any) Func

// Register sets the function For consults. The serializer package calls it
// from an init function; it is not safe to call concurrently with For.
func Register(f func(ser any) Func) { lookup = f }

// For returns the decoder of ser that never panics, or nil if ser has
// none (then its Unmarshal must be called under a recover).
func For(ser any) Func {
	if lookup == nil || ser == nil {
		return nil
	}
	return lookup(ser)
}
