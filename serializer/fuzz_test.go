package serializer

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"reflect"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// fuzzTarget is the struct destination the fuzz tests decode into: it has a
// field of every shape the decoders treat differently.
type fuzzTarget struct {
	Base
	I   int64          `json:"i"`
	U   uint64         `json:"u"`
	F   float64        `json:"f"`
	F32 float32        `json:"f32"`
	S   string         `json:"s"`
	B   []byte         `json:"b"`
	T   time.Time      `json:"t"`
	D   time.Duration  `json:"d"`
	L   []string       `json:"l"`
	Arr [2]int16       `json:"arr"`
	M   map[string]int `json:"m"`
	A   any            `json:"a"`
	P   *fuzzTarget    `json:"p"`
	C   []fuzzTarget   `json:"c"`
}

// fuzzSmall is a two-field struct: msgpack v5 also decodes it from a
// two-element array, which gives the fuzzer short inputs that reach map and
// slice decoding back to back.
type fuzzSmall struct {
	M map[string]int `json:"m"`
	L []int          `json:"l"`
}

func fuzzSeeds(s Serializer) [][]byte {
	values := []any{
		nil, true, 0, -1, 127, 128, -33, math.MaxInt64, math.MinInt64, uint64(math.MaxUint64),
		1.5, float32(2.5), "", "string", []byte{}, []byte{1, 2},
		[]any{}, []any{1, "a", nil, []any{map[string]any{}}}, map[string]any{"k": []any{1.5, "v"}},
		time.Date(2024, 2, 29, 12, 0, 0, 999_999_999, time.FixedZone("", -3600)), time.Time{},
		sampleOuter(),
		fuzzTarget{
			Base: Base{BaseID: 1, BaseName: "b"}, I: -5, U: 5, F: 0.25, F32: 1, S: "s", B: []byte("b"),
			T: time.Unix(1e9, 5), D: time.Second, L: []string{"l"}, Arr: [2]int16{1, -1},
			M: map[string]int{"m": 1}, A: map[string]any{"a": []any{"x"}},
			P: &fuzzTarget{S: "child"}, C: []fuzzTarget{{I: 1}, {U: 2}},
		},
	}
	if _, ok := s.(MsgPack); ok {
		values = append(values, math.NaN(), math.Inf(-1), float32(math.Inf(1)))
	}
	var seeds [][]byte
	for _, v := range values {
		b, err := s.Marshal(v)
		if err != nil {
			panic(err)
		}
		seeds = append(seeds, b)
	}
	return seeds
}

// heapAllocs returns the bytes allocated on the heap so far. Unlike
// runtime.ReadMemStats it does not stop the world, so it is cheap enough to
// call on every fuzz input; small allocations are counted in batches, which
// is precise enough for the bound it checks.
func heapAllocs() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// maxFuzzAlloc bounds what decoding an input may allocate: the decode
// budget (AllocFactor times the input plus AllocSlack), plus a megabyte for
// the decoder's fixed costs and the rest of the process.
func maxFuzzAlloc(data []byte) uint64 { return allocBudget(len(data)) + 1<<20 }

// fuzzDecode decodes data with s into a fresh T and, if that succeeds,
// checks that encoding the result and decoding it again gives an equal
// value.
func fuzzDecode[T any](t *testing.T, s Serializer, data []byte) {
	var v T
	before := heapAllocs()
	err := s.Unmarshal(data, &v)
	if alloc := heapAllocs() - before; alloc > maxFuzzAlloc(data) {
		t.Fatalf("Unmarshal of %d bytes into %T allocated %d bytes (err: %v)", len(data), &v, alloc, err)
	}
	if errors.Is(err, errDiverged) {
		t.Fatalf("Unmarshal into %T: %v\ninput: %x", &v, err, data)
	}
	if err != nil {
		return
	}
	b, err := s.Marshal(v)
	if err != nil {
		t.Fatalf("Marshal of a decoded %T failed: %v\nvalue: %#v\ninput: %x", v, err, v, data)
	}
	var w T
	if err := s.Unmarshal(b, &w); err != nil {
		t.Fatalf("Unmarshal of a re-encoded %T failed: %v\nencoding: %x\ninput: %x", v, err, b, data)
	}
	if !equalValues(reflect.ValueOf(v), reflect.ValueOf(w)) {
		t.Fatalf("round trip of a decoded %T changed it:\nfirst:  %#v\nsecond: %#v\ninput: %x", v, v, w, data)
	}
}

func FuzzMsgPack(f *testing.F) {
	for _, seed := range fuzzSeeds(MsgPack{}) {
		f.Add(seed)
	}
	for _, c := range msgpackHostile {
		if len(c.data) <= 4096 {
			f.Add(c.data)
		}
	}
	f.Add(append(bytes.Repeat([]byte{0x91}, 600), 0x90))
	f.Add([]byte{0xc7, 0x05, 0x00, 0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x81, 0x91, 0x01, 0x01})
	f.Add([]byte{0x92, 0xc7, 0x06, 0x00, 0xc0, 0xdd, 0x01, 0x00, 0x00, 0x00, 0x01})
	f.Add([]byte{0x92, 0x80, 0x90})
	f.Add([]byte{0xd7, 0xff, 0x83, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef})

	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDecode[any](t, MsgPack{}, data)
		fuzzDecode[fuzzTarget](t, MsgPack{}, data)
		fuzzDecode[map[string]any](t, MsgPack{}, data)
		fuzzDecode[[]fuzzTarget](t, MsgPack{}, data)
		fuzzDecode[fuzzSmall](t, MsgPack{}, data)
		fuzzDecode[[]fuzzSmall](t, MsgPack{}, data)
		// Destinations whose keys or element types msgpack v5 handles
		// through other code paths; decoding must only not crash.
		_ = MsgPack{}.Unmarshal(data, new(map[any]any))
		_ = MsgPack{}.Unmarshal(data, new(map[int]map[string]string))
		_ = MsgPack{MaxDepth: 3, MaxSize: 64}.Unmarshal(data, new(any))

		// checkMsgpack must accept exactly what msgpack v5's own Skip
		// reads as one complete value, less what it refuses on purpose.
		// Input that is truncated or declares more than it holds fails
		// Skip too, after Skip allocates up to 1 MiB for it: leave it out.
		_, checkErr := checkMsgpack(data, len(data)+1, nil)
		if checkErr != nil && (errors.Is(checkErr, io.ErrUnexpectedEOF) || strings.Contains(checkErr.Error(), " declares ")) {
			return
		}
		dec := msgpack.NewDecoder(bytes.NewReader(data))
		skipErr := dec.Skip()
		if skipErr == nil && dec.Buffered().(*bytes.Reader).Len() != 0 {
			skipErr = errors.New("trailing bytes")
		}
		if checkErr == nil && skipErr != nil {
			t.Fatalf("checkMsgpack accepted %x, msgpack Skip did not: %v", data, skipErr)
		}
		if checkErr != nil && skipErr == nil && !errors.Is(checkErr, errExtMap) {
			t.Fatalf("checkMsgpack rejected %x, msgpack Skip read it: %v", data, checkErr)
		}
	})
}

func FuzzJSON(f *testing.F) {
	for _, seed := range fuzzSeeds(JSON{}) {
		f.Add(seed)
	}
	for _, c := range jsonHostile {
		if len(c.data) <= 4096 {
			f.Add(c.data)
		}
	}
	f.Add([]byte(`{"a":[1,{"b":"\"[{"}],"c":"\\"}`))
	f.Add([]byte(`"\ud800"`))
	f.Add([]byte(`1e400`))

	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDecode[any](t, JSON{}, data)
		fuzzDecode[fuzzTarget](t, JSON{}, data)
		fuzzDecode[map[string]any](t, JSON{}, data)
		fuzzDecode[[]fuzzSmall](t, JSON{}, data)
		_ = JSON{MaxDepth: 3, MaxSize: 64}.Unmarshal(data, new(any))

		// On valid JSON, the depth scan must agree with the real depth.
		if json.Valid(data) {
			depth := jsonDepth(t, data)
			for _, limit := range []int{1, 2, 3, 8} {
				if got := jsonTooDeep(data, limit) >= 0; got != (depth > limit) {
					t.Fatalf("jsonTooDeep(%q, %d) = %v, but the depth is %d", data, limit, got, depth)
				}
			}
		}
	})
}

// equalValues is reflect.DeepEqual, except that NaN equals NaN, times are
// compared with time.Time.Equal, and integers of different types are equal
// when their values are.
func equalValues(a, b reflect.Value) bool {
	if !a.IsValid() || !b.IsValid() {
		return a.IsValid() == b.IsValid()
	}
	if x, ok := intValue(a); ok {
		// Decoded into an interface, an integer's Go type depends on how
		// it was encoded, and re-encoding may pick a narrower one.
		y, ok := intValue(b)
		return ok && x == y
	}
	if a.Type() != b.Type() {
		return false
	}
	if a.Type() == reflect.TypeFor[time.Time]() {
		return a.Interface().(time.Time).Equal(b.Interface().(time.Time))
	}
	switch a.Kind() {
	case reflect.Float32, reflect.Float64:
		x, y := a.Float(), b.Float()
		return x == y || (math.IsNaN(x) && math.IsNaN(y))
	case reflect.Pointer, reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return equalValues(a.Elem(), b.Elem())
	case reflect.Slice:
		if a.IsNil() != b.IsNil() {
			return false
		}
		fallthrough
	case reflect.Array:
		if a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !equalValues(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Map:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return false
		}
		for it := a.MapRange(); it.Next(); {
			bv := b.MapIndex(it.Key())
			if !bv.IsValid() {
				return isNaNKey(it.Key()) // a NaN key cannot be looked up
			}
			if !equalValues(it.Value(), bv) {
				return false
			}
		}
		return true
	case reflect.Struct:
		for i := range a.NumField() {
			if !equalValues(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	default:
		return reflect.DeepEqual(a.Interface(), b.Interface())
	}
}

func isNaNKey(k reflect.Value) bool {
	for k.Kind() == reflect.Interface && !k.IsNil() {
		k = k.Elem()
	}
	return (k.Kind() == reflect.Float32 || k.Kind() == reflect.Float64) && math.IsNaN(k.Float())
}

// intValue returns an integer's value as a sign and a magnitude, and whether
// v is an integer.
func intValue(v reflect.Value) (struct {
	neg bool
	mag uint64
}, bool) {
	var r struct {
		neg bool
		mag uint64
	}
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n := v.Int()
		if n < 0 {
			r.neg, r.mag = true, uint64(-(n+1))+1
		} else {
			r.mag = uint64(n)
		}
		return r, true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		r.mag = v.Uint()
		return r, true
	}
	return r, false
}

// jsonDepth returns the nesting depth of valid JSON, from encoding/json's
// tokenizer.
func jsonDepth(t *testing.T, data []byte) int {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // so that 1e400 is a token, not a range error
	depth, maxDepth := 0, 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return maxDepth
		}
		if err != nil {
			t.Fatalf("Token on valid JSON %q: %v", data, err)
		}
		switch tok {
		case json.Delim('['), json.Delim('{'):
			depth++
			maxDepth = max(maxDepth, depth)
		case json.Delim(']'), json.Delim('}'):
			depth--
		}
	}
}
