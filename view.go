package cachekit

import "context"

// SharedGetter is an optional interface of a [Cache]: GetShared is Get
// without the defensive copy. It returns the bytes the cache holds for key
// themselves, read-only, where Get must return bytes of the caller's own.
// [Typed] uses it, when the cache it is given has it, to decode straight
// from the stored bytes: a read then costs no copy and no allocation of its
// own.
//
// The contract, beyond Get's:
//
//   - The caller must not modify the returned bytes, nor append to them in
//     place: other readers share them. (An implementation must return a
//     slice whose capacity is its length, so that an append copies.)
//   - The returned bytes never change: the cache never writes into bytes
//     it has returned. A Set, Add, Increment, Expire, CompareAndSwap,
//     Delete, eviction or Close replaces or drops the value the key holds,
//     not the bytes; so a caller may keep them, and read them while other
//     goroutines write the key, for as long as it likes. (Keeping them
//     keeps them in memory, after the cache has let them go.)
//   - Everything else is Get's: the same bytes Get would return (an empty
//     value is a non-nil, empty slice), a miss is an error for which
//     errors.Is(err, ErrNotFound) reports true, and an invalid key, a
//     closed cache and a done context fail as they fail Get. Errors name
//     the operation "Get" (in [Error.Op]): GetShared is a Get, and hooks
//     see it as one (an [Op] of kind [OpGet] for which [Op.Shared] reports
//     true), so that statistics count each read once whichever method
//     made it.
//
// A backend implements it only where it can keep that promise: the memory
// backend does (its entries are never changed in place). Redis and
// Memcached do not need it, as the bytes their clients return are fresh
// already. Every wrapper of this module forwards it, so wrapping a cache
// never hides it. Check for it with a type assertion:
//
//	if sg, ok := c.(cachekit.SharedGetter); ok { b, err = sg.GetShared(ctx, key) }
type SharedGetter interface {
	GetShared(ctx context.Context, key string) ([]byte, error)
}
