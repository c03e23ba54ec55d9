// Package serializer turns Go values into bytes and back for cachekit's
// [github.com/cachekit/cachekit.Typed] layer.
//
// Three serializers are provided. [JSON] (the default) is readable anywhere;
// [MsgPack] is smaller and faster and carries NaN, ±Inf and raw bytes; [Raw]
// stores []byte and string values as they are. Their zero values are ready to
// use.
//
// Every decoder here is written for hostile input: a cache is shared storage,
// and a value may have been written by another version of the program, by
// another program, or by an attacker. Decoding bounds lengths, nesting depth
// and total allocation before or while it reads, and reports garbage as an
// error matching [ErrMalformed], never as a panic, a stack overflow or an
// out-of-memory crash.
package serializer

// Serializer encodes values to bytes and decodes them back.
//
// Marshal receives the value itself (a V when used by Typed[V]); Unmarshal
// receives a non-nil pointer to the destination (a *V). Implementations must
// be safe for concurrent use, must not modify data, and must not retain it
// after Unmarshal returns: Typed may hand Unmarshal the bytes a cache holds
// and shares with every other reader (see cachekit.SharedGetter).
//
// Unmarshal is handed whatever bytes the cache holds, so an implementation
// should treat them as untrusted: return an error for input it cannot decode,
// bound the memory and stack it uses by the size of the input, and never
// panic. The implementations in this package report such input with an error
// matching [ErrMalformed].
type Serializer interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}
