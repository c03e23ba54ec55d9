package decorator

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/maphash"
	"math"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cachekit/cachekit"
)

// The grammar of the keys a decorated function uses (see the package
// documentation):
//
//	data key   name ":" body            body: the argument's encoding, or KeyFunc's string
//	           name "#" hex(sha256(body)) when the first form would be too long
//	lease key  name "!" rest ":owner"       rest: the data key after name
//	           name "!=" hex(sha256(rest)) ":owner" when the first form would be too long
//
// name is Options.Name with '%', ':', '#' and '!' percent-escaped, so the
// first of those three separators in a key says which form it has, and no
// data key of one function equals a data or lease key of another. A lease
// key is the key of a [lock.Locker] whose Prefix is name "!" and whose
// lock name is rest (which starts with ':' or '#', never '='), or "="
// and the hash.

// maxDataKey is the longest data key: one byte shorter than MaxKeySize.
// (Earlier versions made the lease key one byte longer than the data key;
// the bound stays so that no data key changes.)
const maxDataKey = cachekit.MaxKeySize - 1

// leaseSuffix is what the Locker appends to a lock name's key.
const leaseSuffix = ":owner"

// maxName bounds the escaped name so that a hashed key always fits.
const maxName = 1024

// escapeName percent-escapes the bytes that separate the parts of a key.
func escapeName(s string) string {
	if !strings.ContainsAny(s, "%:#!") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%', ':', '#', '!':
			fmt.Fprintf(&b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// unstableName matches the symbol names that the Go toolchain gives to
// function literals (pkg.F.func1, pkg.init.func2, pkg.glob..func1) and to
// instances of generic functions (pkg.F[...]): they change when code moves,
// or are shared by different functions, so they cannot name a key space.
var unstableName = regexp.MustCompile(`\.func\d+|\[\.\.\.\]|glob\.\.`)

// deriveName returns the symbol name of fn, or an error when it is not a
// stable identity.
func deriveName(fn any) (string, error) {
	v := reflect.ValueOf(fn)
	if v.Kind() != reflect.Func || v.IsNil() {
		return "", fmt.Errorf("decorator: fn is nil")
	}
	rf := runtime.FuncForPC(v.Pointer())
	if rf == nil {
		return "", fmt.Errorf("decorator: cannot derive a name for fn: set Options.Name")
	}
	name := rf.Name()
	if unstableName.MatchString(name) {
		return "", fmt.Errorf("decorator: fn is %s, a function literal or generic instance whose symbol name "+
			"is not stable across builds: set Options.Name", name)
	}
	return name, nil
}

// keyer turns arguments into data keys.
type keyer[K comparable] struct {
	name   string         // escaped name
	prefix string         // name + ":"
	fast   func(K) string // whole data key, for scalar K; nil otherwise
	hash   func(K) uint64 // for scalar K: the recent-keys cache's hash
	custom func(K) string // Options.KeyFunc
	typ    reflect.Type   // K

	// recent remembers the keys of recent scalar arguments, so that a hit
	// on a hot argument does not allocate its key again: one slot per
	// hash, each an immutable (argument, key) pair.
	recent [recentSlots]atomic.Pointer[recentKey[K]]
}

const recentSlots = 256

type recentKey[K comparable] struct {
	k   K
	key string
}

func newKeyer[K comparable](name string, custom func(K) string) (*keyer[K], error) {
	en := escapeName(name)
	if len(en) > maxName {
		return nil, fmt.Errorf("decorator: Options.Name is longer than %d bytes", maxName)
	}
	kr := &keyer[K]{name: en, prefix: en + ":", custom: custom, typ: reflect.TypeFor[K]()}
	if custom != nil {
		return kr, nil
	}
	if err := checkKeyType(kr.typ, nil); err != nil {
		return nil, fmt.Errorf("decorator: argument type %s cannot be a key: %w; set Options.KeyFunc", kr.typ, err)
	}
	kr.fast = fastKey[K](kr.prefix, kr.typ)
	if kr.fast != nil {
		kr.hash = scalarHash[K](kr.typ, maphash.MakeSeed())
	}
	return kr, nil
}

// key returns the data key of k.
func (kr *keyer[K]) key(k K) (string, error) {
	var key string
	switch {
	case kr.fast != nil:
		slot := &kr.recent[kr.hash(k)%recentSlots]
		if r := slot.Load(); r != nil && r.k == k {
			return r.key, nil
		}
		key = kr.fast(k)
		if len(key) <= maxDataKey {
			slot.Store(&recentKey[K]{k: k, key: key})
		}
	case kr.custom != nil:
		key = kr.prefix + kr.custom(k)
	default:
		b := make([]byte, 0, len(kr.prefix)+64)
		b = append(b, kr.prefix...)
		b = append(b, "v:"...)
		b, err := appendValue(b, reflect.ValueOf(&k).Elem())
		if err != nil {
			return "", &cachekit.Error{Op: "Cached", Err: fmt.Errorf("%w: argument of type %s: %w; set Options.KeyFunc",
				cachekit.ErrInvalidKey, kr.typ, err)}
		}
		key = unsafe.String(unsafe.SliceData(b), len(b))
	}
	if len(key) > maxDataKey {
		sum := sha256.Sum256([]byte(key[len(kr.prefix):]))
		key = kr.name + "#" + hex.EncodeToString(sum[:])
	}
	return key, nil
}

// leasePrefix is the Prefix of the Locker that holds the leases.
func (kr *keyer[K]) leasePrefix() string { return kr.name + "!" }

// leaseName returns the name, in the Locker of leasePrefix, of the lease
// of a data key: the data key after the function's name, or, when the
// lease key would be longer than MaxKeySize, "=" and its SHA-256.
func (kr *keyer[K]) leaseName(key string) string {
	rest := key[len(kr.name):]
	if len(kr.name)+1+len(rest)+len(leaseSuffix) <= cachekit.MaxKeySize {
		return rest
	}
	sum := sha256.Sum256([]byte(rest))
	return "=" + hex.EncodeToString(sum[:])
}

// leaseKey returns the key under which the lease of a data key is stored.
func (kr *keyer[K]) leaseKey(key string) string { return kr.lockKey(kr.leaseName(key)) }

// lockKey returns the key under which the lease of a lease name is stored.
func (kr *keyer[K]) lockKey(name string) string { return kr.leasePrefix() + name + leaseSuffix }

// checkKeyType rejects types whose values have no identity that is stable
// across processes: pointers, channels and unsafe pointers compare by
// address. Interfaces are checked value by value, when a key is made.
func checkKeyType(t reflect.Type, seen map[reflect.Type]bool) error {
	switch t.Kind() {
	case reflect.Pointer, reflect.Chan, reflect.UnsafePointer, reflect.Func, reflect.Map, reflect.Slice:
		return fmt.Errorf("it holds a %s, whose identity is not stable across processes", t)
	case reflect.Array:
		return checkKeyType(t.Elem(), seen)
	case reflect.Struct:
		if seen[t] {
			return nil
		}
		if seen == nil {
			seen = map[reflect.Type]bool{}
		}
		seen[t] = true
		for i := range t.NumField() {
			if err := checkKeyType(t.Field(i).Type, seen); err != nil {
				return err
			}
		}
	}
	return nil
}

// fastKey returns a key function for scalar kinds, which reads k through
// unsafe according to its kind (the kind fixes the memory layout), or nil.
func fastKey[K comparable](prefix string, t reflect.Type) func(K) string {
	switch t.Kind() {
	case reflect.String:
		p := prefix + "s:"
		return func(k K) string { return p + *(*string)(unsafe.Pointer(&k)) }
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		p, size := prefix+"i:", t.Size()
		return func(k K) string {
			b := make([]byte, 0, len(p)+20)
			b = strconv.AppendInt(append(b, p...), readInt(unsafe.Pointer(&k), size), 10)
			return unsafe.String(unsafe.SliceData(b), len(b))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		p, size := prefix+"u:", t.Size()
		return func(k K) string {
			b := make([]byte, 0, len(p)+20)
			b = strconv.AppendUint(append(b, p...), readUint(unsafe.Pointer(&k), size), 10)
			return unsafe.String(unsafe.SliceData(b), len(b))
		}
	case reflect.Bool:
		t, f := prefix+"b:true", prefix+"b:false"
		return func(k K) string {
			if *(*bool)(unsafe.Pointer(&k)) {
				return t
			}
			return f
		}
	case reflect.Float32, reflect.Float64:
		p, bits := prefix+"f:", t.Bits()
		return func(k K) string {
			var f float64
			if bits == 32 {
				f = float64(*(*float32)(unsafe.Pointer(&k)))
			} else {
				f = *(*float64)(unsafe.Pointer(&k))
			}
			b := appendFloat(append(make([]byte, 0, len(p)+24), p...), f, bits)
			return unsafe.String(unsafe.SliceData(b), len(b))
		}
	}
	return nil
}

// scalarHash returns a hash function for the scalar kinds fastKey
// handles, reading k through unsafe as fastKey does.
func scalarHash[K comparable](t reflect.Type, seed maphash.Seed) func(K) uint64 {
	if t.Kind() == reflect.String {
		return func(k K) uint64 { return maphash.String(seed, *(*string)(unsafe.Pointer(&k))) }
	}
	mix := maphash.String(seed, "") | 1
	size := t.Size()
	return func(k K) uint64 {
		x := readUint(unsafe.Pointer(&k), size) * mix
		return x ^ x>>29
	}
}

func readInt(p unsafe.Pointer, size uintptr) int64 {
	switch size {
	case 1:
		return int64(*(*int8)(p))
	case 2:
		return int64(*(*int16)(p))
	case 4:
		return int64(*(*int32)(p))
	}
	return *(*int64)(p)
}

func readUint(p unsafe.Pointer, size uintptr) uint64 {
	switch size {
	case 1:
		return uint64(*(*uint8)(p))
	case 2:
		return uint64(*(*uint16)(p))
	case 4:
		return uint64(*(*uint32)(p))
	}
	return *(*uint64)(p)
}

// appendFloat writes f in its shortest exact form. -0 is written as 0,
// because -0 == 0 and equal arguments must share a key.
func appendFloat(b []byte, f float64, bits int) []byte {
	if f == 0 {
		f = 0
	}
	if math.IsNaN(f) {
		return append(b, "NaN"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, bits)
}

// appendValue appends the self-delimiting encoding of v:
//
//	string     's' len ':' bytes
//	int/uint   'i' decimal ';'   'u' decimal ';'
//	bool       'b1' 'b0'
//	float      'f' shortest-form ';'     complex  'c' re ',' im ';'
//	struct     '{' field ',' field ',' ... '}'   (every field, in order)
//	array      '[' elem ',' elem ',' ... ']'
//	interface  'n' (nil)  or  'T' len ':' type-identity value
//
// Each token starts with its own tag and ends where its form says, so the
// encoding of a value of a fixed type is injective.
func appendValue(b []byte, v reflect.Value) ([]byte, error) {
	switch v.Kind() {
	case reflect.String:
		s := v.String()
		b = append(strconv.AppendInt(append(b, 's'), int64(len(s)), 10), ':')
		return append(b, s...), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return append(strconv.AppendInt(append(b, 'i'), v.Int(), 10), ';'), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return append(strconv.AppendUint(append(b, 'u'), v.Uint(), 10), ';'), nil
	case reflect.Bool:
		if v.Bool() {
			return append(b, "b1"...), nil
		}
		return append(b, "b0"...), nil
	case reflect.Float32, reflect.Float64:
		return append(appendFloat(append(b, 'f'), v.Float(), v.Type().Bits()), ';'), nil
	case reflect.Complex64, reflect.Complex128:
		c, bits := v.Complex(), v.Type().Bits()/2
		b = appendFloat(append(b, 'c'), real(c), bits)
		return append(appendFloat(append(b, ','), imag(c), bits), ';'), nil
	case reflect.Struct:
		b = append(b, '{')
		for i := range v.NumField() {
			var err error
			if b, err = appendValue(b, v.Field(i)); err != nil {
				return nil, err
			}
			b = append(b, ',')
		}
		return append(b, '}'), nil
	case reflect.Array:
		b = append(b, '[')
		for i := range v.Len() {
			var err error
			if b, err = appendValue(b, v.Index(i)); err != nil {
				return nil, err
			}
			b = append(b, ',')
		}
		return append(b, ']'), nil
	case reflect.Interface:
		if v.IsNil() {
			return append(b, 'n'), nil
		}
		e := v.Elem()
		id := typeID(e.Type())
		b = append(strconv.AppendInt(append(b, 'T'), int64(len(id)), 10), ':')
		return appendValue(append(b, id...), e)
	}
	return nil, fmt.Errorf("it holds a %s, whose identity is not stable across processes", v.Type())
}

var typeIDs sync.Map // reflect.Type -> string

// typeID names t unambiguously: named types by package path and name,
// other types by their structure.
func typeID(t reflect.Type) string {
	if id, ok := typeIDs.Load(t); ok {
		return id.(string)
	}
	id := buildTypeID(t)
	typeIDs.Store(t, id)
	return id
}

func buildTypeID(t reflect.Type) string {
	if t.Name() != "" {
		if t.PkgPath() == "" {
			return t.Name()
		}
		return t.PkgPath() + "." + t.Name()
	}
	switch t.Kind() {
	case reflect.Array:
		return "[" + strconv.Itoa(t.Len()) + "]" + typeID(t.Elem())
	case reflect.Pointer:
		return "*" + typeID(t.Elem())
	case reflect.Slice:
		return "[]" + typeID(t.Elem())
	case reflect.Map:
		return "map[" + typeID(t.Key()) + "]" + typeID(t.Elem())
	case reflect.Chan:
		return t.ChanDir().String() + " " + typeID(t.Elem())
	case reflect.Struct:
		var b strings.Builder
		b.WriteString("struct{")
		for i := range t.NumField() {
			f := t.Field(i)
			if f.PkgPath != "" {
				b.WriteString(f.PkgPath + ".")
			}
			b.WriteString(f.Name)
			if f.Anonymous {
				b.WriteString(" embedded")
			}
			b.WriteString(" " + typeID(f.Type))
			if f.Tag != "" {
				b.WriteString(" " + strconv.Quote(string(f.Tag)))
			}
			b.WriteString(";")
		}
		b.WriteString("}")
		return b.String()
	}
	// Unnamed interfaces and functions: their String form, qualified by
	// package name; they cannot be dynamic types of a usable key anyway.
	return t.String()
}
