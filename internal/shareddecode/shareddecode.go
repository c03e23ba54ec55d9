// Package shareddecode connects cachekit's Typed to the serializers of this
// module that decode immutable bytes faster than bytes in general.
//
// Typed reads the memory backend's stored bytes without a copy (see
// cachekit.SharedGetter), and those bytes never change. A serializer that
// validates its input before decoding, as serializer.MsgPack does, can then
// remember which inputs it has validated and not walk them again. It must
// never do so for bytes a caller could modify, so the faster decode is not a
// method a user could call on arbitrary bytes: the serializer package
// registers it here, and Typed asks for it only for the bytes GetShared
// returns.
package shareddecode

// Func decodes data into v, as the serializer's Unmarshal does, given that
// data is immutable: no one modifies it, now or later. It never panics:
// a panic while decoding (in the decoder, or in a custom decoding method of
// the destination) is returned as an error, so that a caller needs no
// recover of its own.
type Func func(data []byte, v any) error

// lookup is set by Register, during the initialization of the serializer
// package, and only read afterwards.
var lookup func(ser any) Func

// Register sets the function For consults. The serializer package calls it
// from an init function; it is not safe to call concurrently with For.
func Register(f func(ser any) Func) { lookup = f }

// For returns the immutable-input decoder for ser, or nil if ser has none
// (then Unmarshal is the way to decode).
func For(ser any) Func {
	if lookup == nil || ser == nil {
		return nil
	}
	return lookup(ser)
}
