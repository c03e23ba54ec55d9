package serializer

import (
	"encoding"
	"encoding/json"
	"math"
	"math/bits"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/vmihailenco/msgpack/v5"
)

// This file bounds what a decode may allocate relative to its input.
//
// The structural checks (checkMsgpack, jsonTooDeep) bound every declared
// length by the input's size, but a decoder still allocates per element,
// and an element can be one byte of input and hundreds of bytes of heap:
// msgpack's {"":nil} (3 bytes) decoded into an interface is a map of about
// 340 bytes, a nil (1 byte) in an array decoded into a []T is a T, and each
// level of nesting is a slice or map of its own. So before decoding, the
// input is walked once more together with the destination's type, and the
// walk adds up what the decoder will allocate for each value: slices and
// their growth, maps with their tables, strings, boxed interface values,
// pointees. Input whose estimate exceeds allocBudget(len(data)) is
// rejected with ErrLimitExceeded, and nothing is decoded.
//
// The estimate errs high (the tests check it against measured
// allocations), and it only matters for input whose allocations would
// pass a megabyte: for ordinary values, which take tens of bytes of heap
// or less per byte of encoding, the walk never rejects. Values that take
// far more memory than their encoding (slices of structs with large fields
// that are not encoded) can exceed the budget as legitimately as hostile
// input does, and nothing in the bytes tells them apart: so Marshal runs
// the same walk on its own output (checkEncodedCost) and refuses what
// Unmarshal would, and the AllocFactor and AllocSlack fields raise the
// budget for callers who store such values.

// AllocFactor and AllocSlack define the default budget of a decode:
// Unmarshal of n bytes may allocate at most about AllocFactor*n + AllocSlack
// bytes, and input that would make it allocate more is refused before
// decoding (and Marshal refuses to produce it). The AllocFactor and
// AllocSlack fields of JSON and MsgPack override them for one serializer.
const (
	AllocFactor = 64
	AllocSlack  = 1 << 20
)

// allocLimits is the decode budget of one serializer, its defaults applied.
type allocLimits struct{ factor, slack uint64 }

// limitsOf returns the budget that the AllocFactor and AllocSlack fields of
// a serializer set: zero or negative means the package default.
func limitsOf(factor, slack int) allocLimits {
	l := allocLimits{AllocFactor, AllocSlack}
	if factor > 0 {
		l.factor = uint64(factor)
	}
	if slack > 0 {
		l.slack = uint64(slack)
	}
	return l
}

// budget returns what decoding n bytes may allocate, saturating rather
// than overflowing for huge limits.
func (l allocLimits) budget(n int) uint64 {
	hi, lo := bits.Mul64(l.factor, uint64(n))
	sum, carry := bits.Add64(lo, l.slack, 0)
	if hi != 0 || carry != 0 {
		return math.MaxUint64
	}
	return sum
}

// defaultLimits is the budget of a serializer whose fields are zero.
var defaultLimits = allocLimits{AllocFactor, AllocSlack}

func allocBudget(n int) uint64 { return defaultLimits.budget(n) }

// shapeKind is how a destination type decodes, for the purpose of cost.
type shapeKind uint8

const (
	shAny    shapeKind = iota // an interface, or a type with its own decoder: natural types
	shScalar                  // bool and numbers: nothing allocated
	shString                  // a string
	shBytes                   // a []byte
	shSlice                   // any other slice
	shArray                   // an array: elements in place
	shMap                     // a map
	shPtr                     // a pointer
	shStruct                  // a struct
)

// shape is a destination type reduced to what its decoding allocates.
type shape struct {
	kind    shapeKind
	perByte uint64 // the most one byte of input can cost in this shape
	size    uint64 // shSlice, shPtr: element size; shMap: key plus value size
	ptrs    bool   // shSlice: the element holds pointers (which sizes its arrays)
	elem    *shape // shSlice, shArray, shPtr: the element; shMap: the value
	key     *shape // shMap
	fields  map[string]*shape
	folded  map[string]*shape // fields by lower-cased name, for JSON
	order   []*shape          // fields in order, for structs encoded as arrays
}

var anyShape = &shape{kind: shAny}

// shapes caches the shape of each destination type, per format.
var shapes [2]sync.Map // [0] msgpack, [1] json; reflect.Type -> *shapeMemo

// lastShape holds, per format, the last shape shapes returned: a type
// comparison is cheaper than a sync.Map lookup.
var lastShape [2]atomic.Pointer[shapeMemo]

type shapeMemo struct {
	t reflect.Type
	s *shape
}

const (
	fmtMsgpack = 0
	fmtJSON    = 1
)

var (
	msgpackCustomDecoder = reflect.TypeFor[msgpack.CustomDecoder]()
	msgpackUnmarshaler   = reflect.TypeFor[msgpack.Unmarshaler]()
	jsonUnmarshaler      = reflect.TypeFor[json.Unmarshaler]()
	binaryUnmarshaler    = reflect.TypeFor[encoding.BinaryUnmarshaler]()
	textUnmarshaler      = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// shapeOf returns the shape of the type v points to (v is what Unmarshal
// was given).
func shapeOf(v any, format int) *shape {
	t := reflect.TypeOf(v)
	if t == nil || t.Kind() != reflect.Pointer {
		return anyShape
	}
	return shapeOfType(t.Elem(), format)
}

// valueShape returns the shape of the type of v (v is what Marshal was
// given): the destination that Unmarshal of its encoding is handed a
// pointer to, as Typed[V] does. A nil v decodes into an interface.
func valueShape(v any, format int) *shape {
	t := reflect.TypeOf(v)
	if t == nil {
		return anyShape
	}
	return shapeOfType(t, format)
}

// shapeOfType returns the shape of destination type t, built once per type
// and format.
func shapeOfType(t reflect.Type, format int) *shape {
	if m := lastShape[format].Load(); m != nil && m.t == t {
		return m.s // the usual case: one type decoded over and over
	}
	if m, ok := shapes[format].Load(t); ok {
		lastShape[format].Store(m.(*shapeMemo)) // no allocation
		return m.(*shapeMemo).s
	}
	seen := map[reflect.Type]*shape{}
	s := buildShape(t, format, seen)
	var most uint64
	for _, x := range seen {
		most = max(most, x.headerCost())
	}
	for _, x := range seen {
		x.perByte = most
	}
	shapes[format].Store(t, &shapeMemo{t, s})
	return s
}

// headerCost bounds what one header (one byte of input at least) decoded
// into s can cost, its children aside: an empty map in an interface is the
// worst of the interface cases.
func (s *shape) headerCost() uint64 {
	switch s.kind {
	case shAny:
		return 2*mapCost(8, anyMapSlot) + 2*boxedSlice + extCost
	case shSlice, shPtr:
		return 3*s.size + 2*mapCost(8, anyMapSlot)
	case shMap:
		return 2*mapCost(8, s.size) + 3*(s.size+1)
	}
	return 2 * mapCost(8, anyMapSlot)
}

// mayExceed reports whether decoding n bytes into s could possibly
// allocate more than the default budget, so that the input must be walked.
func (s *shape) mayExceed(n int) bool { return s.mayExceedSlack(n, AllocSlack) }

// mayExceedSlack reports whether decoding n bytes into s could possibly
// allocate more than slack bytes (and so more than any budget with that
// slack), so that the input must be walked. It is one multiplication: Marshal
// and Unmarshal of small values pay nothing more for the walk.
func (s *shape) mayExceedSlack(n int, slack uint64) bool {
	hi, lo := bits.Mul64(uint64(n), s.perByte)
	return hi != 0 || lo > slack
}

// customDecoded reports whether t (or *t) decodes itself: its decoding
// allocates what its own code does, which is costed as for an interface.
func customDecoded(t reflect.Type, format int) bool {
	pt := reflect.PointerTo(t)
	impl := func(i reflect.Type) bool { return t.Implements(i) || pt.Implements(i) }
	if format == fmtMsgpack {
		return impl(msgpackCustomDecoder) || impl(msgpackUnmarshaler) || impl(binaryUnmarshaler) || impl(textUnmarshaler)
	}
	return impl(jsonUnmarshaler) || impl(textUnmarshaler)
}

func buildShape(t reflect.Type, format int, seen map[reflect.Type]*shape) *shape {
	if s, ok := seen[t]; ok {
		return s
	}
	s := &shape{}
	seen[t] = s
	if t.Kind() != reflect.Interface && customDecoded(t, format) {
		s.kind = shAny
		return s
	}
	switch t.Kind() {
	case reflect.Interface:
		s.kind = shAny
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		s.kind = shScalar
	case reflect.String:
		s.kind = shString
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			s.kind = shBytes
			break
		}
		s.kind, s.size, s.elem = shSlice, uint64(t.Elem().Size()), buildShape(t.Elem(), format, seen)
		s.ptrs = hasPointers(t.Elem())
	case reflect.Array:
		s.kind, s.elem = shArray, buildShape(t.Elem(), format, seen)
	case reflect.Map:
		s.kind, s.size = shMap, uint64(t.Key().Size()+t.Elem().Size())
		s.key, s.elem = buildShape(t.Key(), format, seen), buildShape(t.Elem(), format, seen)
	case reflect.Pointer:
		s.kind, s.size, s.elem = shPtr, uint64(t.Elem().Size()), buildShape(t.Elem(), format, seen)
	case reflect.Struct:
		s.kind = shStruct
		s.fields = make(map[string]*shape)
		s.folded = make(map[string]*shape)
		addFields(s, t, format, seen, 0)
	default: // chan, func, unsafe.Pointer: the decoder refuses them
		s.kind = shScalar
	}
	return s
}

// addFields records the fields of struct type t in s under every name a
// decoder may know them by (msgpack tag, json tag, Go name), flattening
// embedded structs.
func addFields(s *shape, t reflect.Type, format int, seen map[reflect.Type]*shape, depth int) {
	for i := range t.NumField() {
		f := t.Field(i)
		fs := buildShape(f.Type, format, seen)
		if depth == 0 {
			s.order = append(s.order, fs)
		}
		names := []string{f.Name}
		for _, tag := range []string{"msgpack", "json"} {
			if name, _, _ := strings.Cut(f.Tag.Get(tag), ","); name != "" && name != "-" {
				names = append(names, name)
			}
		}
		for _, n := range names {
			if _, dup := s.fields[n]; !dup {
				s.fields[n] = fs
			}
			if _, dup := s.folded[strings.ToLower(n)]; !dup {
				s.folded[strings.ToLower(n)] = fs
			}
		}
		if f.Anonymous && depth < 8 {
			et := f.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				addFields(s, et, format, seen, depth+1)
			}
		}
	}
}

// heap returns about what the allocator takes for an object of n bytes:
// n plus its size-class rounding (about an eighth), and at least 16. It
// is also used for aggregates of many objects (a large map's tables), for
// which the eighth is the margin; objCost is exact for one object.
func heap(n uint64) uint64 {
	if n == 0 {
		return 0
	}
	return max(n+n/8, 16)
}

// objCost returns what the allocator takes for one object of n bytes (with
// pointers if ptrs): exactly its block (allocSize) when it is larger than
// 32 KiB, where whole 8 KiB pages are counted rather than heap's eighth
// more; and the larger of the two below, where heap's margin is kept. The
// arrays of a slice of large elements, which dominate its cost, are then
// counted at their real size.
func objCost(n uint64, ptrs bool) uint64 {
	a := allocSize(n, ptrs)
	if n > maxSmallAlloc-mallocHeader {
		return a
	}
	return max(a, heap(n))
}

// The Go allocator's constants (runtime/sizeclasses.go, runtime/malloc.go,
// unchanged since Go 1.22), on 64-bit platforms.
const (
	maxSmallAlloc = 32768   // the largest size class
	allocPage     = 8192    // large objects take whole pages
	mallocHeader  = 8       // added to small objects with pointers...
	headerAbove   = 8 * 64  // ...larger than this
	maxAllocCost  = 1 << 62 // a saturated estimate: more than any budget of real input
)

// sizeClasses are the allocator's small object sizes.
var sizeClasses = [...]uint16{8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208,
	224, 240, 256, 288, 320, 352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152,
	1280, 1408, 1536, 1792, 2048, 2304, 2688, 3072, 3200, 3456, 4096, 4864, 5376, 6144, 6528,
	6784, 6912, 8192, 9472, 9728, 10240, 10880, 12288, 13568, 14336, 16384, 18432, 19072, 20480,
	21760, 24576, 27264, 28672, 32768}

func pageRound(n uint64) uint64 { return (n + allocPage - 1) &^ (allocPage - 1) }

// allocSize returns the block the allocator takes for an object of n bytes
// (with pointers if ptrs): the size class of n, plus the header that objects
// with pointers larger than 512 bytes carry, or whole pages above 32 KiB.
// It is what runtime.roundupsize, which growslice sizes arrays with, adds
// the header back to.
func allocSize(n uint64, ptrs bool) uint64 {
	if n == 0 {
		return 0
	}
	if n > maxSmallAlloc-mallocHeader {
		return pageRound(n)
	}
	if ptrs && n > headerAbove {
		n += mallocHeader
	}
	lo, hi := 0, len(sizeClasses)-1
	for lo < hi {
		m := (lo + hi) / 2
		if uint64(sizeClasses[m]) >= n {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return uint64(sizeClasses[lo])
}

// growCost returns what appending n elements of size bytes one at a time
// to an empty slice allocates in all, as encoding/json does (reflect's
// Value.Grow(1) whenever the slice is full) and as append does: every array
// along the way, each as growslice sizes it. Its capacity policy
// (runtime.nextslicecap, since Go 1.20) doubles below 256 elements and then
// adds a quarter plus 192; each array is rounded up to its size class or to
// whole pages, and the rounding becomes capacity. Summing the exact
// sequence is both an upper bound and tight: for 300 elements of 2 KiB it
// is 626 elements' worth, where a flat "five times the last array" counted
// 1688; and that flat rule undercounted slices of millions of elements by
// up to a tenth, as their last array can be a quarter longer than they are.
func growCost(n, size uint64, ptrs bool) uint64 {
	if n == 0 || size == 0 {
		return 0
	}
	var total, c uint64
	for c < n {
		next := 2 * c
		switch {
		case c == 0:
			next = 1
		case c >= 256:
			next = c + (c+3*256)/4
		}
		if next > maxAllocCost/size {
			return maxAllocCost
		}
		b := next * size
		total += objCost(b, ptrs)
		a := allocSize(b, ptrs)
		if ptrs && b > headerAbove && b <= maxSmallAlloc-mallocHeader {
			a -= mallocHeader // the header is not capacity
		}
		c = a / size
	}
	return total
}

// hasPointers reports whether values of type t hold pointers, which
// decides how the allocator sizes arrays of them.
func hasPointers(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Array:
		return t.Len() > 0 && hasPointers(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if hasPointers(t.Field(i).Type) {
				return true
			}
		}
		return false
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.String, reflect.Interface,
		reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return true
	}
	return false
}

// mapCost returns what a map of n entries with slot bytes per entry
// allocates: its header and its swiss-table groups (eight slots and eight
// control bytes each, at most 7/8 full, rounded up to a power of two).
func mapCost(n, slot uint64) uint64 {
	const header = 48 + 64
	if n <= 8 {
		return header + heap(8*(slot+1))
	}
	slots := uint64(16)
	for slots*7/8 < n {
		slots *= 2
	}
	return header + heap(slots*(slot+2)) + slots/8*8
}

// Per-value costs of decoding into an interface, measured with msgpack v5
// and encoding/json on 64-bit platforms.
const (
	boxedSlice  = 24 + 16 // the slice header boxed in the interface, and the decoder's scratch
	boxedString = 16
	boxedNumber = 8
	anySlot     = 16 // an interface in a slice
	anyMapSlot  = 32 // a string or interface key and an interface value
	extCost     = 64 // an extension value decoded into an interface
	typedSlice  = 32 // msgpack v5's scratch for a slice decoded into a typed slice
)

// mpCost walks msgpack input that checkMsgpack accepted.
type mpCost struct {
	data []byte
	pos  int
	cost uint64
}

// msgpackCost returns an upper estimate of what decoding data into v
// allocates.
func msgpackCost(data []byte, v any) uint64 { return msgpackShapeCost(data, shapeOf(v, fmtMsgpack)) }

// msgpackShapeCost returns an upper estimate of what decoding data into a
// destination of shape s allocates.
func msgpackShapeCost(data []byte, s *shape) uint64 {
	w := mpCost{data: data}
	w.value(s)
	return w.cost
}

// header reads one msgpack header: its kind, the declared length (of a
// container, str, bin or ext payload) and whether it is a non-fixint
// number (which boxes into an interface with an allocation).
func (w *mpCost) header() (kind byte, n uint64, boxed bool) {
	c := w.data[w.pos]
	w.pos++
	be := func(k int) uint64 {
		var x uint64
		for _, b := range w.data[w.pos : w.pos+k] {
			x = x<<8 | uint64(b)
		}
		w.pos += k
		return x
	}
	switch {
	case c <= 0x7f || c >= 0xe0:
		return 's', 0, false
	case c <= 0x8f:
		return 'm', uint64(c & 0x0f), false
	case c <= 0x9f:
		return 'a', uint64(c & 0x0f), false
	case c <= 0xbf:
		return 'r', uint64(c & 0x1f), false
	}
	switch c {
	case mpNil:
		return 'n', 0, false
	case mpFalse, mpTrue:
		return 's', 0, false
	case mpBin8, mpBin16, mpBin32:
		return 'b', be(1 << (c - mpBin8)), false
	case mpStr8, mpStr16, mpStr32:
		return 'r', be(1 << (c - mpStr8)), false
	case mpExt8, mpExt16, mpExt32:
		n := be(1 << (c - mpExt8))
		w.pos++ // type
		return 'e', n, false
	case mpFixExt1, mpFixExt2, mpFixExt4, mpFixExt8, mpFixExt16:
		w.pos++
		return 'e', 1 << (c - mpFixExt1), false
	case mpUint8, mpInt8:
		w.pos++
	case mpUint16, mpInt16:
		w.pos += 2
	case mpUint32, mpInt32, mpFloat32:
		w.pos += 4
	case mpUint64, mpInt64, mpFloat64:
		w.pos += 8
	case mpArray16:
		return 'a', be(2), false
	case mpArray32:
		return 'a', be(4), false
	case mpMap16:
		return 'm', be(2), false
	case mpMap32:
		return 'm', be(4), false
	}
	return 's', 0, true
}

// value walks one value decoded into s and adds its cost.
func (w *mpCost) value(s *shape) {
	for s.kind == shPtr && w.data[w.pos] != mpNil {
		w.cost += heap(s.size)
		s = s.elem
	}
	kind, n, boxed := w.header()
	switch kind {
	case 'r', 'b', 'e':
		w.pos += int(n)
	}
	switch s.kind {
	case shAny:
		switch kind {
		case 's':
			if boxed {
				w.cost += boxedNumber
			}
		case 'r':
			if n > 0 {
				w.cost += boxedString + heap(n)
			}
		case 'b':
			w.cost += boxedSlice + heap(n)
		case 'e':
			w.cost += extCost + heap(n)
		case 'a':
			w.cost += boxedSlice + heap(anySlot*n)
			for range n {
				w.value(anyShape)
			}
		case 'm':
			w.cost += mapCost(n, anyMapSlot)
			for range n {
				w.value(anyShape)
				w.value(anyShape)
			}
		}
	case shString, shBytes:
		if kind == 'r' || kind == 'b' {
			w.cost += heap(n)
		}
		w.skip(kind, n)
	case shSlice:
		if kind == 'a' {
			// growSliceValue: a slice of n, then possibly a copy; and
			// the reflect.Value it builds it in.
			w.cost += 2*objCost(n*s.size, s.ptrs) + typedSlice
			for range n {
				w.value(s.elem)
			}
			return
		}
		w.skip(kind, n)
	case shArray:
		if kind == 'a' {
			for range n {
				w.value(s.elem)
			}
			return
		}
		w.skip(kind, n)
	case shMap:
		if kind == 'm' {
			w.cost += mapCost(n, s.size)
			for range n {
				w.value(s.key)
				w.value(s.elem)
			}
			return
		}
		w.skip(kind, n)
	case shStruct:
		switch kind {
		case 'm':
			for range n {
				f := w.fieldName(s.fields)
				w.value(f)
			}
		case 'a':
			for i := range n {
				f := anyShape
				if i < uint64(len(s.order)) {
					f = s.order[i]
				}
				w.value(f)
			}
		default:
			w.skip(kind, n)
		}
	default: // shScalar, and shPtr to nil
		w.skip(kind, n)
	}
}

// skip walks the children of a container whose destination does not take
// it; the decoder fails there, but the children are costed as if they went
// into interfaces, which errs high.
func (w *mpCost) skip(kind byte, n uint64) {
	switch kind {
	case 'a':
		for range n {
			w.value(anyShape)
		}
	case 'm':
		for range 2 * n {
			w.value(anyShape)
		}
	}
}

// fieldName reads a map key for a struct and returns the shape of the
// field it names; a key that names no field is costed as an interface.
func (w *mpCost) fieldName(fields map[string]*shape) *shape {
	p := w.pos
	kind, n, _ := w.header()
	if kind == 'r' {
		name := w.data[w.pos : w.pos+int(n)]
		w.pos += int(n)
		if f, ok := fields[string(name)]; ok {
			return f
		}
		return anyShape
	}
	w.pos = p
	w.value(anyShape)
	return anyShape
}

// jsonCost walks JSON input that jsonTooDeep accepted. It does not check
// the syntax (json.Unmarshal does, before it allocates); on malformed input
// it stops early, and its answer only has to be safe.
type jsonCost struct {
	data []byte
	pos  int
	cost uint64
	bad  bool
}

// jsonCostOf returns an upper estimate of what decoding data into v with
// encoding/json allocates.
func jsonCostOf(data []byte, v any) uint64 { return jsonShapeCost(data, shapeOf(v, fmtJSON)) }

// jsonShapeCost returns an upper estimate of what decoding data into a
// destination of shape s with encoding/json allocates.
func jsonShapeCost(data []byte, s *shape) uint64 {
	w := jsonCost{data: data}
	w.value(s)
	return w.cost
}

func (w *jsonCost) space() {
	for w.pos < len(w.data) {
		switch w.data[w.pos] {
		case ' ', '\t', '\n', '\r':
			w.pos++
		default:
			return
		}
	}
}

// str reads a string at pos and returns its length and whether it has
// escapes (which cost a copy when decoded).
func (w *jsonCost) str() (raw []byte) {
	start := w.pos + 1
	for i := start; i < len(w.data); i++ {
		switch w.data[i] {
		case '\\':
			i++
		case '"':
			w.pos = i + 1
			return w.data[start:i]
		}
	}
	w.bad = true
	w.pos = len(w.data)
	return nil
}

// value walks one JSON value decoded into s and adds its cost.
func (w *jsonCost) value(s *shape) {
	w.space()
	if w.bad || w.pos >= len(w.data) {
		w.bad = true
		return
	}
	for s.kind == shPtr {
		if w.data[w.pos] == 'n' { // null
			break
		}
		w.cost += heap(s.size)
		s = s.elem
	}
	switch c := w.data[w.pos]; c {
	case '"':
		raw := w.str()
		n := uint64(len(raw))
		switch s.kind {
		case shAny:
			w.cost += boxedString + 2*heap(n)
		case shString, shBytes, shScalar:
			// Escapes are unquoted into a new buffer; []byte is base64,
			// decoded into a buffer of its own; ",string" numbers parse
			// a copy.
			w.cost += 2 * heap(n)
		default:
			w.cost += heap(n)
		}
	case '[':
		w.pos++
		elem := anyShape
		var slot uint64 = anySlot
		ptrs := true
		switch s.kind {
		case shAny:
			w.cost += boxedSlice
		case shSlice:
			elem, slot, ptrs = s.elem, s.size, s.ptrs
		case shArray:
			elem, slot = s.elem, 0
		}
		var n uint64
		for {
			w.space()
			if w.pos >= len(w.data) {
				w.bad = true
				return
			}
			if w.data[w.pos] == ']' {
				w.pos++
				break
			}
			if n > 0 {
				if w.data[w.pos] != ',' {
					w.bad = true
					return
				}
				w.pos++
			}
			w.value(elem)
			if w.bad {
				return
			}
			n++
		}
		// Slices grow one element at a time (append into an interface,
		// reflect's Grow(1) into a typed slice), and every array along
		// the way is garbage but allocated: growCost adds them up. (The
		// elements of a slice of a type that JSON does not fill, such as
		// a struct with unexported or `json:"-"` fields, take their whole
		// size in each array all the same.)
		if slot > 0 {
			w.cost += growCost(n, slot, ptrs) + 64
		}
	case '{':
		w.pos++
		var n uint64
		slot := uint64(anyMapSlot)
		switch s.kind {
		case shMap:
			slot = s.size
		case shStruct:
			slot = 0
		}
		for {
			w.space()
			if w.pos >= len(w.data) {
				w.bad = true
				return
			}
			if w.data[w.pos] == '}' {
				w.pos++
				break
			}
			if n > 0 {
				if w.data[w.pos] != ',' {
					w.bad = true
					return
				}
				w.pos++
				w.space()
			}
			if w.pos >= len(w.data) || w.data[w.pos] != '"' {
				w.bad = true
				return
			}
			key := w.str()
			w.space()
			if w.pos >= len(w.data) || w.data[w.pos] != ':' {
				w.bad = true
				return
			}
			w.pos++
			val := anyShape
			switch s.kind {
			case shMap:
				val = s.elem
				w.cost += 2 * heap(uint64(len(key))) // the key, unquoted and converted
			case shStruct:
				if f, ok := s.fields[string(key)]; ok {
					val = f
				} else if f, ok := s.folded[strings.ToLower(string(key))]; ok {
					val = f
				}
			default:
				w.cost += 2 * heap(uint64(len(key)))
			}
			w.value(val)
			if w.bad {
				return
			}
			n++
		}
		if slot > 0 {
			// Maps grow by inserting: the tables of every size up to the
			// last are allocated in turn, about twice the last.
			w.cost += 2 * mapCost(n, slot)
		}
	default: // number, true, false, null
		start := w.pos
		for w.pos < len(w.data) {
			switch w.data[w.pos] {
			case ',', ']', '}', ' ', '\t', '\n', '\r':
				goto done
			}
			w.pos++
		}
	done:
		if s.kind == shAny && (c == '-' || c >= '0' && c <= '9') {
			w.cost += boxedNumber
		}
		if w.pos == start {
			w.bad = true
		}
	}
}

// formatAlloc describes a decode over budget: what it would allocate for n
// bytes, which limits it exceeds and how to raise them.
func formatAlloc(cost uint64, n int, l allocLimits) string {
	return "decoding would allocate about " + strconv.FormatUint(cost, 10) + " bytes for " +
		strconv.Itoa(n) + " bytes of input, more than AllocFactor (" + strconv.FormatUint(l.factor, 10) +
		") times its size plus AllocSlack (" + strconv.FormatUint(l.slack, 10) + " bytes)"
}

// checkEncodedCost is Marshal's side of the budget: it returns an error
// matching ErrLimitExceeded if decoding out, the encoding of v, into a
// value of v's type would exceed l, since Unmarshal with the same settings
// would then refuse it. It runs the very estimate Unmarshal runs (same
// shape, same bytes, same budget), so what it accepts Unmarshal accepts;
// and like Unmarshal it skips the walk when the encoding is too short to
// exceed the slack, so small values pay one multiplication for it.
//
// The destination is v's dynamic type, as in Typed[V] for a concrete V.
// Decoding into an interface (a Typed[any]) allocates differently, and
// Marshal cannot know that it will happen.
func checkEncodedCost(format int, out []byte, v any, l allocLimits) error {
	s := valueShape(v, format)
	if !s.mayExceedSlack(len(out), l.slack) {
		return nil
	}
	name, cost := "msgpack", uint64(0)
	if format == fmtJSON {
		name, cost = "json", jsonShapeCost(out, s)
	} else {
		cost = msgpackShapeCost(out, s)
	}
	if cost <= l.budget(len(out)) {
		return nil
	}
	return limitOnEncode(name, "decoding the "+strconv.Itoa(len(out))+"-byte encoding of a "+
		reflect.TypeOf(v).String()+" would allocate about "+strconv.FormatUint(cost, 10)+
		" bytes, more than AllocFactor ("+strconv.FormatUint(l.factor, 10)+") times its size plus AllocSlack ("+
		strconv.FormatUint(l.slack, 10)+" bytes), so Unmarshal would refuse it; "+
		"to store such values, raise the serializer's AllocFactor or AllocSlack field, for writers and readers alike")
}
