package cachekit

import (
	"context"
	"errors"
	"sync"
	"time"
)

// A Hook sees every operation of a [Cache] made by [WithHooks], before and
// after it runs, and can observe, change or answer it. It is middleware, in
// the manner of net/http handlers wrapping one another: ProcessOp receives the
// operation, may read and change its inputs, calls op.Next to run the rest of
// the chain (the later hooks, then the wrapped cache), may read and change
// the outputs, and returns the error the caller gets:
//
//	func (h myHook) ProcessOp(ctx context.Context, op *cachekit.Op) error {
//		start := time.Now()
//		err := op.Next(ctx)
//		record(op.Name(), op.Outcome(), time.Since(start))
//		return err
//	}
//
// A hook that does not call Next short-circuits the operation: the wrapped
// cache is not called, and the outputs the hook set on op (Value for Get,
// Values for GetMany, Count, OK, N) are what the caller gets, with the error
// it returns. Such a hook answers for the contract of [Cache]: it must
// reject invalid keys, negative TTLs and done contexts as a backend would.
// A hook may call Next more than once, to retry; each call overwrites the
// outputs.
//
// ProcessOp must be safe for concurrent use. It must not keep op, or call
// op.Next, after it returns: the Op is recycled for another operation (as
// with slog.Record, copy what you need). It must call Next, if at all, from
// its own goroutine.
type Hook interface {
	ProcessOp(ctx context.Context, op *Op) error
}

// HookFunc adapts a function to the [Hook] interface.
type HookFunc func(ctx context.Context, op *Op) error

// ProcessOp calls f(ctx, op).
func (f HookFunc) ProcessOp(ctx context.Context, op *Op) error { return f(ctx, op) }

// EventHook is implemented by hooks that also want the events that layers
// above the cache report through [Emit]: loads, load errors, stampede joins,
// stale values served, early refreshes and decode failures (see [EventKind]).
// The cache returned by [WithHooks] passes each event to every hook that
// implements EventHook, in the order the hooks were given. OnEvent must be
// safe for concurrent use and should return quickly: it runs on the
// goroutine of the layer that reports the event (see [EventKind]).
type EventHook interface {
	OnEvent(ctx context.Context, ev Event)
}

// EventHookFunc adapts a function to the [EventHook] interface. It is also a
// [Hook] that lets every operation through, so that it can be given to
// [WithHooks] on its own; WithHooks leaves it out of the operation chain, so
// it costs nothing per operation.
type EventHookFunc func(ctx context.Context, ev Event)

// OnEvent calls f(ctx, ev).
func (f EventHookFunc) OnEvent(ctx context.Context, ev Event) { f(ctx, ev) }

// ProcessOp runs the operation unchanged.
func (f EventHookFunc) ProcessOp(ctx context.Context, op *Op) error { return op.Next(ctx) }

// OpKind identifies a [Cache] method. Its String method returns the method
// name, which is also what [Op.Name] returns and what errors carry as
// [Error.Op].
type OpKind uint8

// The operations a [Hook] sees: one per method of [Cache] except Close, and
// one per method of the optional interfaces that the wrapped cache
// implements ([CompareAndDeleter], [CompareAndSwapper]); a [SharedGetter]'s
// GetShared is seen as an OpGet (see [Op.Shared]), and a [Versioner]'s
// methods as the kinds they are forms of (see [Op.Versioned]). Kinds are
// only ever added, at the end.
const (
	OpGet OpKind = iota
	OpGetMany
	OpSet
	OpSetMany
	OpAdd
	OpDelete
	OpExists
	OpIncrement
	OpExpire
	OpClear
	// OpCompareAndDelete is [CompareAndDeleter.CompareAndDelete], seen only
	// when the wrapped cache implements it.
	OpCompareAndDelete
	// OpCompareAndSwap is [CompareAndSwapper.CompareAndSwap], seen only
	// when the wrapped cache implements it.
	OpCompareAndSwap
)

// NumOpKinds is the number of [OpKind] values: an array indexed by OpKind has
// this length. It grows when a kind is added.
const NumOpKinds = int(OpCompareAndSwap) + 1

var opNames = [NumOpKinds]string{
	OpGet:       "Get",
	OpGetMany:   "GetMany",
	OpSet:       "Set",
	OpSetMany:   "SetMany",
	OpAdd:       "Add",
	OpDelete:    "Delete",
	OpExists:    "Exists",
	OpIncrement: "Increment",
	OpExpire:    "Expire",
	OpClear:     "Clear",

	OpCompareAndDelete: "CompareAndDelete",
	OpCompareAndSwap:   "CompareAndSwap",
}

// String returns the name of the Cache method, such as "Get", or "OpKind(n)"
// for a value out of range.
func (k OpKind) String() string {
	if int(k) < NumOpKinds {
		return opNames[k]
	}
	return "OpKind(" + itoa(int(k)) + ")"
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for ; n > 0; n /= 10 {
		i--
		b[i] = byte('0' + n%10)
	}
	return string(b[i:])
}

// Outcome classifies how an operation ended; see [Op.Outcome].
type Outcome uint8

// The outcomes of an operation.
const (
	// OutcomeOK: the operation succeeded and is not a read (Set, Delete, ...),
	// or is a GetMany (see Op.Hits and Op.Misses for its keys).
	OutcomeOK Outcome = iota
	// OutcomeHit: Get found its key; Exists reported true.
	OutcomeHit
	// OutcomeMiss: Get failed with ErrNotFound; Exists reported false.
	OutcomeMiss
	// OutcomeExists: Add failed with ErrExists. This is the answer Add
	// exists to give, not a failure.
	OutcomeExists
	// OutcomeError: the operation failed with any other error.
	OutcomeError
)

var outcomeNames = [...]string{"ok", "hit", "miss", "exists", "error"}

// String returns "ok", "hit", "miss", "exists" or "error".
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "Outcome(" + itoa(int(o)) + ")"
}

// Op is one operation on a [Cache] made by [WithHooks], as a [Hook] sees it:
// which method, its inputs and, once [Op.Next] has returned, its outputs.
//
// A hook may change the inputs before calling Next, and the outputs after
// (or instead of) calling it. Slices and maps in an Op belong to the caller
// or to the wrapped cache: replace them rather than changing their elements
// in place. An Op is valid only during the ProcessOp call it was given to;
// see [Hook].
type Op struct {
	// Inputs. Which ones an operation uses depends on its kind.

	Key   string            // Get, Set, Add, Exists, Increment, Expire, CompareAndDelete, CompareAndSwap
	Keys  []string          // GetMany, Delete
	Value []byte            // Set, Add, CompareAndSwap: the value to store. Get: the output, the value found (read-only if Shared).
	Old   []byte            // CompareAndDelete, CompareAndSwap: the value the key must hold (CompareAndSwap: nil for absent)
	Items map[string][]byte // SetMany
	TTL   time.Duration     // Set, SetMany, Add, Expire, CompareAndSwap
	Delta int64             // Increment

	// Version is, for a versioned operation (see [Op.Versioned]), the
	// version the key must have (input of SwapVersion and DeleteVersion)
	// and, once Next has returned, the version of the value found or
	// stored (output of GetVersion, AddVersion and SwapVersion; 0 when
	// nothing was found or stored).
	Version uint64

	// Outputs, set by Next (or by a hook that answers without calling it).

	Values map[string][]byte // GetMany: the hits
	Count  int               // Delete: how many keys existed
	OK     bool              // Exists: present; Expire: the key existed; CompareAndDelete: deleted; CompareAndSwap: swapped
	N      int64             // Increment: the new value

	// Internal state. done, which recycles an Op, clears every field.
	kind      OpKind
	shared    bool  // a Get made by GetShared (see Op.Shared)
	versioned bool  // made by a Versioner method (see Op.Versioned)
	next      int   // index of the hook the next call of Next runs
	err       error // what the last call of Next returned
	c         *hooked
}

// Kind returns the Cache method this operation is.
func (op *Op) Kind() OpKind { return op.kind }

// Shared reports whether this operation, of kind [OpGet], is a
// [SharedGetter.GetShared]: a Get without the copy, whose Value, once Next
// has returned, is the bytes the cache holds. Such a Value must not be
// modified (replace it instead, as for any Op), but may be kept: it never
// changes. A hook that answers a shared Get itself may set Value to bytes
// the caller will only read. Hooks that count reads need not look at it:
// GetShared is a Get like any other.
func (op *Op) Shared() bool { return op.shared }

// Versioned reports whether this operation is a method of [Versioner]:
// GetVersion (of kind [OpGet]), AddVersion ([OpAdd]), SwapVersion
// ([OpCompareAndSwap]) or DeleteVersion ([OpCompareAndDelete]). Such an
// operation compares, or returns, [Op.Version] instead of Old: SwapVersion
// and DeleteVersion have a nil Old, and their OK reports whether they
// swapped or deleted. A hook that answers one itself must set Version as
// the method would. Hooks that count operations need not look at it: each
// is the operation of its kind that it is a form of.
func (op *Op) Versioned() bool { return op.versioned }

// Name returns the name of the Cache method this operation is: "Get",
// "GetMany", "Set", "SetMany", "Add", "Delete", "Exists", "Increment",
// "Expire", "Clear", or, for the optional interfaces' methods,
// "CompareAndDelete" and "CompareAndSwap".
func (op *Op) Name() string { return opNames[op.kind] }

// Err returns the error the last call of Next returned: the error of the
// rest of the chain, before this hook had its say. It is nil before Next is
// called.
func (op *Op) Err() error { return op.err }

// Next runs the rest of the chain: the next hook's ProcessOp or, after the
// last hook, the wrapped cache's method with op's inputs, whose results it
// stores in op's outputs. It returns the error the rest of the chain
// returned, which [Op.Err] reports afterwards too.
func (op *Op) Next(ctx context.Context) error {
	i := op.next
	var err error
	if i < len(op.c.hooks) {
		op.next = i + 1
		err = op.c.hooks[i].ProcessOp(ctx, op)
		op.next = i
	} else {
		err = op.run(ctx)
	}
	if err != nil || op.err != nil { // no store, and no write barrier, in the usual case
		op.err = err
	}
	return err
}

// run calls the wrapped cache.
func (op *Op) run(ctx context.Context) (err error) {
	c := op.c.c
	switch op.kind {
	case OpGet:
		if op.versioned {
			// Only the wrapper of a Versioner makes versioned operations.
			op.Value, op.Version, err = c.(Versioner).GetVersion(ctx, op.Key)
		} else if op.shared {
			// Only the wrapper of a SharedGetter makes shared Gets.
			op.Value, err = c.(SharedGetter).GetShared(ctx, op.Key)
		} else {
			op.Value, err = c.Get(ctx, op.Key)
		}
	case OpGetMany:
		op.Values, err = c.GetMany(ctx, op.Keys)
	case OpSet:
		err = c.Set(ctx, op.Key, op.Value, op.TTL)
	case OpSetMany:
		err = c.SetMany(ctx, op.Items, op.TTL)
	case OpAdd:
		if op.versioned {
			op.Version, err = c.(Versioner).AddVersion(ctx, op.Key, op.Value, op.TTL)
		} else {
			err = c.Add(ctx, op.Key, op.Value, op.TTL)
		}
	case OpDelete:
		op.Count, err = c.Delete(ctx, op.Keys...)
	case OpExists:
		op.OK, err = c.Exists(ctx, op.Key)
	case OpIncrement:
		op.N, err = c.Increment(ctx, op.Key, op.Delta)
	case OpExpire:
		op.OK, err = c.Expire(ctx, op.Key, op.TTL)
	case OpClear:
		err = c.Clear(ctx)
	case OpCompareAndDelete:
		// Only the wrapper of a CompareAndDeleter makes this kind.
		if op.versioned {
			op.OK, err = c.(Versioner).DeleteVersion(ctx, op.Key, op.Version)
		} else {
			op.OK, err = c.(CompareAndDeleter).CompareAndDelete(ctx, op.Key, op.Old)
		}
	case OpCompareAndSwap:
		// Only the wrapper of a CompareAndSwapper makes this kind.
		if op.versioned {
			op.Version, op.OK, err = c.(Versioner).SwapVersion(ctx, op.Key, op.Version, op.Value, op.TTL)
		} else {
			op.OK, err = c.(CompareAndSwapper).CompareAndSwap(ctx, op.Key, op.Old, op.Value, op.TTL)
		}
	}
	return err
}

// Outcome classifies the result of the last call of Next (see [Outcome]):
// OutcomeError if it failed with anything but the expected answers
// ErrNotFound from Get (OutcomeMiss) and ErrExists from Add (OutcomeExists);
// otherwise OutcomeHit or OutcomeMiss for Get and Exists, and OutcomeOK for
// the rest, GetMany, CompareAndDelete and CompareAndSwap included (see
// Op.OK for whether these deleted or swapped). Call it after Next.
func (op *Op) Outcome() Outcome {
	if op.err != nil {
		switch {
		case op.kind == OpGet && errors.Is(op.err, ErrNotFound):
			return OutcomeMiss
		case op.kind == OpAdd && errors.Is(op.err, ErrExists):
			return OutcomeExists
		}
		return OutcomeError
	}
	switch op.kind {
	case OpGet:
		return OutcomeHit
	case OpExists:
		if op.OK {
			return OutcomeHit
		}
		return OutcomeMiss
	}
	return OutcomeOK
}

// Hits returns how many keys the operation found, once Next has returned:
// 1 for a Get or Exists hit, the number of requested keys present in the
// result for GetMany (a key requested twice counts twice), 0 otherwise.
func (op *Op) Hits() int {
	switch op.kind {
	case OpGet, OpExists:
		if op.Outcome() == OutcomeHit {
			return 1
		}
	case OpGetMany:
		if op.err != nil {
			return 0
		}
		if len(op.Values) == len(op.Keys) {
			return len(op.Keys) // every key found (the usual case): no lookups
		}
		n := 0
		for _, k := range op.Keys {
			if _, ok := op.Values[k]; ok {
				n++
			}
		}
		return n
	}
	return 0
}

// Misses returns how many keys the operation did not find, once Next has
// returned: 1 for a Get or Exists miss, the number of requested keys absent
// from the result for GetMany (a key requested twice counts twice), 0
// otherwise. A failed operation has neither hits nor misses.
func (op *Op) Misses() int {
	switch op.kind {
	case OpGet, OpExists:
		if op.Outcome() == OutcomeMiss {
			return 1
		}
	case OpGetMany:
		if op.err != nil {
			return 0
		}
		return len(op.Keys) - op.Hits()
	}
	return 0
}

// Size returns the bytes of value data the operation moves: the value
// written by Set, Add and CompareAndSwap, the old value CompareAndDelete
// compares, the values written by SetMany, and, once Next has
// returned, the value read by Get and the values read by GetMany. It is 0
// for the other operations. Keys are not counted.
func (op *Op) Size() int {
	n := 0
	switch op.kind {
	case OpGet, OpSet, OpAdd, OpCompareAndSwap:
		n = len(op.Value)
	case OpCompareAndDelete:
		n = len(op.Old)
	case OpSetMany:
		for _, v := range op.Items {
			n += len(v)
		}
	case OpGetMany:
		for _, v := range op.Values {
			n += len(v)
		}
	}
	return n
}

// NumKeys returns how many keys the operation names: 1 for single-key
// operations, len(Keys) for GetMany and Delete, len(Items) for SetMany, 0 for
// Clear.
func (op *Op) NumKeys() int {
	switch op.kind {
	case OpGetMany, OpDelete:
		return len(op.Keys)
	case OpSetMany:
		return len(op.Items)
	case OpClear:
		return 0
	}
	return 1
}

var opPool = sync.Pool{New: func() any { return new(Op) }}

// WithHooks returns a Cache that runs every operation on c through hooks.
// The first hook is the outermost: it sees each operation first and its
// result last, so WithHooks(c, a, b) runs a, then b inside a, then c inside
// b. Nil hooks are ignored; with none left, WithHooks returns c itself, so
// that an empty hook list costs nothing. WithHooks on a cache that WithHooks
// returned makes one chain of both lists, the new hooks outermost.
//
// The returned Cache passes each method to the same method of c (GetMany
// stays one GetMany, one round trip), returns c's errors as they are and
// wraps any other error, such as one from a hook, in an [*Error] naming the
// operation. Close closes c and is not seen by hooks. Events reported with
// [Emit] go to every hook that implements [EventHook], in order, and then to
// c if c is an [EventHandler] itself.
//
// The returned Cache implements the optional interfaces that c implements,
// and only those: when c is a [CompareAndDeleter], so is the returned
// Cache, and its CompareAndDelete runs through the hooks as an Op of kind
// [OpCompareAndDelete]; likewise for [CompareAndSwapper] and
// [OpCompareAndSwap]. When c is a [SharedGetter], so is the returned Cache,
// and its GetShared runs through the hooks as an Op of kind [OpGet] (for
// which [Op.Shared] reports true), so that hooks count it as the Get it
// is. When c is a [Versioner], so is the returned Cache, and its methods run
// through the hooks as Ops of the kinds they are forms of (for which
// [Op.Versioned] reports true). It also has a method Unwrap() Cache that
// returns c.
//
// With hooks that do not allocate, the wrapper adds no allocation per
// operation: Ops are recycled, which is why hooks must not keep them.
func WithHooks(c Cache, hooks ...Hook) Cache {
	var chain, events []Hook
	for _, h := range hooks {
		if h == nil {
			continue
		}
		if _, ok := h.(EventHookFunc); !ok {
			chain = append(chain, h)
		}
		events = append(events, h)
	}
	if len(events) == 0 {
		return c
	}
	if inner := asHooked(c); inner != nil {
		chain = append(chain, inner.hooks...)
		events = append(events, inner.all...)
		c = inner.c
	}
	h := &hooked{c: c, hooks: chain, all: events}
	for _, hk := range events {
		if eh, ok := hk.(EventHook); ok {
			h.events = append(h.events, eh)
		}
	}
	h.next, _ = c.(EventHandler)
	// As database/sql does for its drivers: the wrapper has a method of an
	// optional interface only when c has it, so that a type assertion on the
	// wrapper tells the truth about c. (Each further optional interface
	// doubles the types: one per combination.)
	_, cad := c.(CompareAndDeleter)
	_, cas := c.(CompareAndSwapper)
	_, ver := c.(Versioner) // implies cad and cas
	if _, sg := c.(SharedGetter); sg {
		switch {
		case ver:
			return &hookedVS{hookedV{hookedCADCAS{h}}}
		case cad && cas:
			return &hookedCADCASS{hookedCADCAS{h}}
		case cad:
			return &hookedCADS{hookedCAD{h}}
		case cas:
			return &hookedCASS{hookedCAS{h}}
		}
		return &hookedS{h}
	}
	switch {
	case ver:
		return &hookedV{hookedCADCAS{h}}
	case cad && cas:
		return &hookedCADCAS{h}
	case cad:
		return &hookedCAD{h}
	case cas:
		return &hookedCAS{h}
	}
	return h
}

// asHooked returns the *hooked inside a Cache that WithHooks returned, or nil.
func asHooked(c Cache) *hooked {
	switch h := c.(type) {
	case *hooked:
		return h
	case *hookedCAD:
		return h.hooked
	case *hookedCAS:
		return h.hooked
	case *hookedCADCAS:
		return h.hooked
	case *hookedS:
		return h.hooked
	case *hookedCADS:
		return h.hooked
	case *hookedCASS:
		return h.hooked
	case *hookedCADCASS:
		return h.hooked
	case *hookedV:
		return h.hooked
	case *hookedVS:
		return h.hooked
	}
	return nil
}

// The Caches that WithHooks returns for a [CompareAndDeleter], a
// [CompareAndSwapper], and a cache that is both.
type (
	hookedCAD    struct{ *hooked }
	hookedCAS    struct{ *hooked }
	hookedCADCAS struct{ *hooked }
)

var (
	_ Cache             = (*hookedCAD)(nil)
	_ EventHandler      = (*hookedCAD)(nil)
	_ CompareAndDeleter = (*hookedCAD)(nil)
	_ CompareAndSwapper = (*hookedCAS)(nil)
	_ CompareAndDeleter = (*hookedCADCAS)(nil)
	_ CompareAndSwapper = (*hookedCADCAS)(nil)
)

// CompareAndDelete runs CompareAndDelete through the hooks.
func (c *hookedCAD) CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	return c.compareAndDelete(ctx, key, old)
}

// CompareAndSwap runs CompareAndSwap through the hooks.
func (c *hookedCAS) CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	return c.compareAndSwap(ctx, key, old, new, ttl)
}

// CompareAndDelete runs CompareAndDelete through the hooks.
func (c *hookedCADCAS) CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	return c.compareAndDelete(ctx, key, old)
}

// CompareAndSwap runs CompareAndSwap through the hooks.
func (c *hookedCADCAS) CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	return c.compareAndSwap(ctx, key, old, new, ttl)
}

// The Caches that WithHooks returns for a [SharedGetter] that is also
// neither, a CompareAndDeleter, a CompareAndSwapper, or both.
type (
	hookedS       struct{ *hooked }
	hookedCADS    struct{ hookedCAD }
	hookedCASS    struct{ hookedCAS }
	hookedCADCASS struct{ hookedCADCAS }
)

var (
	_ SharedGetter      = (*hookedS)(nil)
	_ SharedGetter      = (*hookedCADS)(nil)
	_ CompareAndDeleter = (*hookedCADS)(nil)
	_ SharedGetter      = (*hookedCASS)(nil)
	_ CompareAndSwapper = (*hookedCASS)(nil)
	_ SharedGetter      = (*hookedCADCASS)(nil)
	_ CompareAndDeleter = (*hookedCADCASS)(nil)
	_ CompareAndSwapper = (*hookedCADCASS)(nil)
	_ EventHandler      = (*hookedCADCASS)(nil)
)

// GetShared runs GetShared through the hooks, as a Get.
func (c *hookedS) GetShared(ctx context.Context, key string) ([]byte, error) {
	return c.getShared(ctx, key)
}

// GetShared runs GetShared through the hooks, as a Get.
func (c *hookedCADS) GetShared(ctx context.Context, key string) ([]byte, error) {
	return c.getShared(ctx, key)
}

// GetShared runs GetShared through the hooks, as a Get.
func (c *hookedCASS) GetShared(ctx context.Context, key string) ([]byte, error) {
	return c.getShared(ctx, key)
}

// GetShared runs GetShared through the hooks, as a Get.
func (c *hookedCADCASS) GetShared(ctx context.Context, key string) ([]byte, error) {
	return c.getShared(ctx, key)
}

func (c *hooked) getShared(ctx context.Context, key string) ([]byte, error) {
	op := c.op(OpGet)
	op.Key, op.shared = key, true
	err := op.Next(ctx)
	v := op.Value
	done(op)
	if err != nil {
		return nil, wrap("Get", key, err)
	}
	return v, nil
}

// The Caches that WithHooks returns for a [Versioner] (which is a
// CompareAndDeleter and a CompareAndSwapper), and for one that is also a
// SharedGetter.
type (
	hookedV  struct{ hookedCADCAS }
	hookedVS struct{ hookedV }
)

var (
	_ Versioner    = (*hookedV)(nil)
	_ Versioner    = (*hookedVS)(nil)
	_ SharedGetter = (*hookedVS)(nil)
	_ EventHandler = (*hookedVS)(nil)
)

// GetVersion runs GetVersion through the hooks, as a Get.
func (c *hookedV) GetVersion(ctx context.Context, key string) ([]byte, uint64, error) {
	return c.getVersion(ctx, key)
}

// AddVersion runs AddVersion through the hooks, as an Add.
func (c *hookedV) AddVersion(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	return c.addVersion(ctx, key, value, ttl)
}

// SwapVersion runs SwapVersion through the hooks, as a CompareAndSwap.
func (c *hookedV) SwapVersion(ctx context.Context, key string, version uint64, value []byte, ttl time.Duration) (uint64, bool, error) {
	return c.swapVersion(ctx, key, version, value, ttl)
}

// DeleteVersion runs DeleteVersion through the hooks, as a
// CompareAndDelete.
func (c *hookedV) DeleteVersion(ctx context.Context, key string, version uint64) (bool, error) {
	return c.deleteVersion(ctx, key, version)
}

// GetShared runs GetShared through the hooks, as a Get.
func (c *hookedVS) GetShared(ctx context.Context, key string) ([]byte, error) {
	return c.getShared(ctx, key)
}

func (c *hooked) getVersion(ctx context.Context, key string) ([]byte, uint64, error) {
	op := c.op(OpGet)
	op.Key, op.versioned = key, true
	err := op.Next(ctx)
	v, ver := op.Value, op.Version
	done(op)
	if err != nil {
		return nil, 0, wrap("GetVersion", key, err)
	}
	return v, ver, nil
}

func (c *hooked) addVersion(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	op := c.op(OpAdd)
	op.Key, op.Value, op.TTL, op.versioned = key, value, ttl, true
	err := op.Next(ctx)
	ver := op.Version
	done(op)
	if err != nil {
		return 0, wrap("AddVersion", key, err)
	}
	return ver, nil
}

func (c *hooked) swapVersion(ctx context.Context, key string, version uint64, value []byte, ttl time.Duration) (uint64, bool, error) {
	op := c.op(OpCompareAndSwap)
	op.Key, op.Version, op.Value, op.TTL, op.versioned = key, version, value, ttl, true
	err := op.Next(ctx)
	ver, ok := op.Version, op.OK
	done(op)
	if err != nil {
		return 0, false, wrap("SwapVersion", key, err)
	}
	if !ok {
		ver = 0
	}
	return ver, ok, nil
}

func (c *hooked) deleteVersion(ctx context.Context, key string, version uint64) (bool, error) {
	op := c.op(OpCompareAndDelete)
	op.Key, op.Version, op.versioned = key, version, true
	err := op.Next(ctx)
	ok := op.OK
	done(op)
	return ok, wrap("DeleteVersion", key, err)
}

func (c *hooked) compareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	op := c.op(OpCompareAndDelete)
	op.Key, op.Old = key, old
	err := op.Next(ctx)
	ok := op.OK
	done(op)
	return ok, wrap("CompareAndDelete", key, err)
}

func (c *hooked) compareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	op := c.op(OpCompareAndSwap)
	op.Key, op.Old, op.Value, op.TTL = key, old, new, ttl
	err := op.Next(ctx)
	ok := op.OK
	done(op)
	return ok, wrap("CompareAndSwap", key, err)
}

// hooked is the Cache that WithHooks returns.
type hooked struct {
	c      Cache
	hooks  []Hook       // the operation chain, outermost first
	all    []Hook       // every hook given, EventHookFuncs included
	events []EventHook  // the hooks that take events
	next   EventHandler // c, if it takes events
}

var (
	_ Cache        = (*hooked)(nil)
	_ EventHandler = (*hooked)(nil)
)

func (c *hooked) op(kind OpKind) *Op {
	op := opPool.Get().(*Op)
	op.kind = kind
	op.c = c
	return op
}

// done recycles op, dropping every reference it holds. It stores only into
// the fields that are set: while the garbage collector is marking, every
// pointer store pays a write barrier, and zeroing the whole Op (*op = Op{})
// pays for all its pointer words. A field added to Op must be cleared here.
func done(op *Op) {
	if op.Key != "" {
		op.Key = ""
	}
	if op.Keys != nil {
		op.Keys = nil
	}
	if op.Value != nil {
		op.Value = nil
	}
	if op.Old != nil {
		op.Old = nil
	}
	if op.Items != nil {
		op.Items = nil
	}
	if op.Values != nil {
		op.Values = nil
	}
	if op.err != nil {
		op.err = nil
	}
	op.TTL, op.Delta, op.Count, op.OK, op.N, op.next, op.shared = 0, 0, 0, false, 0, 0, false
	op.Version, op.versioned = 0, false
	op.c = nil
	opPool.Put(op)
}

// Get runs Get through the hooks.
func (c *hooked) Get(ctx context.Context, key string) ([]byte, error) {
	op := c.op(OpGet)
	op.Key = key
	err := op.Next(ctx)
	v := op.Value
	done(op)
	if err != nil {
		return nil, wrap("Get", key, err)
	}
	return v, nil
}

// GetMany runs GetMany through the hooks. When the chain returns values
// together with an error (a partial result, as a pool with a dead server
// gives), GetMany returns both.
func (c *hooked) GetMany(ctx context.Context, keys []string) (map[string][]byte, error) {
	op := c.op(OpGetMany)
	op.Keys = keys
	err := op.Next(ctx)
	v := op.Values
	done(op)
	if err != nil {
		// A partial result (the values of the keys that could be read,
		// with an error for the others) goes through as it is.
		return v, wrap("GetMany", "", err)
	}
	if v == nil {
		v = map[string][]byte{} // a short-circuiting hook may leave Values nil
	}
	return v, nil
}

// Set runs Set through the hooks.
func (c *hooked) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	op := c.op(OpSet)
	op.Key, op.Value, op.TTL = key, value, ttl
	err := op.Next(ctx)
	done(op)
	return wrap("Set", key, err)
}

// SetMany runs SetMany through the hooks.
func (c *hooked) SetMany(ctx context.Context, items map[string][]byte, ttl time.Duration) error {
	op := c.op(OpSetMany)
	op.Items, op.TTL = items, ttl
	err := op.Next(ctx)
	done(op)
	return wrap("SetMany", "", err)
}

// Add runs Add through the hooks.
func (c *hooked) Add(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	op := c.op(OpAdd)
	op.Key, op.Value, op.TTL = key, value, ttl
	err := op.Next(ctx)
	done(op)
	return wrap("Add", key, err)
}

// Delete runs Delete through the hooks.
func (c *hooked) Delete(ctx context.Context, keys ...string) (int, error) {
	op := c.op(OpDelete)
	op.Keys = keys
	err := op.Next(ctx)
	n := op.Count
	done(op)
	return n, wrap("Delete", "", err)
}

// Exists runs Exists through the hooks.
func (c *hooked) Exists(ctx context.Context, key string) (bool, error) {
	op := c.op(OpExists)
	op.Key = key
	err := op.Next(ctx)
	ok := op.OK
	done(op)
	return ok, wrap("Exists", key, err)
}

// Increment runs Increment through the hooks.
func (c *hooked) Increment(ctx context.Context, key string, delta int64) (int64, error) {
	op := c.op(OpIncrement)
	op.Key, op.Delta = key, delta
	err := op.Next(ctx)
	n := op.N
	done(op)
	return n, wrap("Increment", key, err)
}

// Expire runs Expire through the hooks.
func (c *hooked) Expire(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	op := c.op(OpExpire)
	op.Key, op.TTL = key, ttl
	err := op.Next(ctx)
	ok := op.OK
	done(op)
	return ok, wrap("Expire", key, err)
}

// Clear runs Clear through the hooks.
func (c *hooked) Clear(ctx context.Context) error {
	op := c.op(OpClear)
	err := op.Next(ctx)
	done(op)
	return wrap("Clear", "", err)
}

// wrap is WrapError without its errors.As, which allocates, for the usual
// case of an error that the wrapped cache has wrapped already.
func wrap(op, key string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*Error); ok {
		return err
	}
	return WrapError(op, key, err)
}

// Close closes the wrapped cache.
func (c *hooked) Close() error { return c.c.Close() }

// HandleEvent passes ev to the hooks that implement EventHook, in order,
// then to the wrapped cache if it handles events.
func (c *hooked) HandleEvent(ctx context.Context, ev Event) {
	for _, h := range c.events {
		h.OnEvent(ctx, ev)
	}
	if c.next != nil {
		c.next.HandleEvent(ctx, ev)
	}
}

// Unwrap returns the cache that c wraps.
func (c *hooked) Unwrap() Cache { return c.c }
