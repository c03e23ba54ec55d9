// Package safedecode lets cachekit's Typed decode without a deferred
// recover of its own when its serializer already returns panics as errors.
//
// Typed promises that a value that cannot be decoded is an error, never a
// panic, whatever the Serializer does; so it calls Unmarshal under a
// deferred recover, which costs about 4% of a Get of a small value.
// serializer.MsgPack recovers inside Unmarshal already. The serializer
// package registers here which of its serializers do so, and Typed asks
// when it is made. It is internal so that the promise stays between the
// two packages of this module.
package safedecode

// neverPanics is set by Register, during the initialization of the
// serializer package, and only read afterwards.
var neverPanics func(ser any) bool

// Register sets the function NeverPanics consults. The serializer package
// calls it from an init function; it is not safe to call concurrently with
// NeverPanics.
func Register(f func(ser any) bool) { neverPanics = f }

// NeverPanics reports whether ser's Unmarshal returns every panic while
// decoding (in the decoder, or in a custom decoding method of the
// destination) as an error, so that it may be called without a recover.
func NeverPanics(ser any) bool {
	return neverPanics != nil && ser != nil && neverPanics(ser)
}
