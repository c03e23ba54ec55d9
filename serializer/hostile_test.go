package serializer

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// maxHostileAlloc is how much memory decoding one hostile input may
// allocate in total.
const maxHostileAlloc = 1 << 20

type hostileCase struct {
	name string
	data []byte
	into func() any // a fresh destination pointer

	// wellFormed marks input that is valid MessagePack that the decoder
	// must still refuse for the destination; its error need not match
	// ErrMalformed.
	wellFormed bool
}

func newOf[T any]() func() any { return func() any { return new(T) } }

func repeat(b []byte, n int) []byte { return bytes.Repeat(b, n) }

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

type hostileStruct struct {
	Name  string         `json:"name"`
	Items []int          `json:"items"`
	Meta  map[string]any `json:"meta"`
	Raw   []byte         `json:"raw"`
	Child *hostileStruct `json:"child"`
}

var msgpackHostile = func() []hostileCase {
	array32 := []byte{0xdd, 0xff, 0xff, 0xff, 0xff}
	map32 := []byte{0xdf, 0xff, 0xff, 0xff, 0xff}
	str32 := []byte{0xdb, 0xff, 0xff, 0xff, 0xff}
	bin32 := []byte{0xc6, 0xff, 0xff, 0xff, 0xff}
	ext32 := []byte{0xc9, 0xff, 0xff, 0xff, 0xff, 0x01}
	nested := repeat([]byte{0x91}, 100000)
	nestedMap := repeat([]byte{0x81, 0xa1, 'k'}, 100000)
	// A map32 header inside an extension payload: msgpack v5 reads it as a
	// map when the destination is a map (see checkMsgpack).
	extMap := []byte{0xc7, 0x05, 0x00, 0xdf, 0xff, 0xff, 0xff, 0xff}
	extDeep := concat([]byte{0xc9, 0x00, 0x01, 0x86, 0xa3, 0x00, 0x81, 0xa1, 'k'}, nested)
	// A valid value to truncate and to extend.
	valid, err := MsgPack{}.Marshal(sampleOuter())
	if err != nil {
		panic(err)
	}

	var cases []hostileCase
	add := func(name string, data []byte, into ...func() any) {
		for _, f := range into {
			cases = append(cases, hostileCase{name: name, data: data, into: f})
		}
	}
	addWellFormed := func(name string, data []byte, into ...func() any) {
		for _, f := range into {
			cases = append(cases, hostileCase{name: name, data: data, into: f, wellFormed: true})
		}
	}
	add("array32 header", array32, newOf[[]int](), newOf[any](), newOf[[]any](), newOf[[]hostileStruct](), newOf[hostileStruct]())
	add("array16 header", []byte{0xdc, 0xff, 0xff}, newOf[[]int](), newOf[any]())
	add("array32 in array", concat([]byte{0x92, 0x01}, array32), newOf[[]any](), newOf[[][]int]())
	add("map32 header", map32, newOf[map[string]any](), newOf[any](), newOf[map[string]string](), newOf[map[int]int](), newOf[hostileStruct]())
	add("map32 in struct field", concat([]byte{0x81, 0xa4, 'm', 'e', 't', 'a'}, map32), newOf[hostileStruct](), newOf[any]())
	add("str32 header", str32, newOf[string](), newOf[any](), newOf[[]byte]())
	add("bin32 header", bin32, newOf[[]byte](), newOf[any](), newOf[string]())
	add("bin32 in struct field", concat([]byte{0x81, 0xa3, 'r', 'a', 'w'}, bin32), newOf[hostileStruct]())
	add("ext32 header", ext32, newOf[any](), newOf[time.Time]())
	add("map32 in extension", extMap, newOf[map[string]any](), newOf[map[string]string]())
	addWellFormed("map32 in extension", extMap, newOf[any](), newOf[hostileStruct]())
	add("deep nesting in extension", extDeep, newOf[map[string]any]())
	addWellFormed("deep nesting in extension", extDeep, newOf[any]())
	add("100000 nested arrays", nested, newOf[any](), newOf[[]any](), newOf[[][]any]())
	add("100000 nested maps", nestedMap, newOf[any](), newOf[map[string]any](), newOf[hostileStruct]())
	add("never-used code", []byte{0xc1}, newOf[any]())
	add("empty input", []byte{}, newOf[any](), newOf[int]())
	add("truncated", valid[:len(valid)-1], newOf[outer](), newOf[any]())
	add("truncated header", []byte{0xcd, 0x01}, newOf[int](), newOf[any]())
	add("truncated ext", []byte{0xd7, 0xff, 0x00}, newOf[time.Time](), newOf[any]())
	add("trailing garbage", concat(valid, []byte{0x00}), newOf[outer](), newOf[any]())
	add("two values", []byte{0x01, 0x02}, newOf[int](), newOf[any]())
	add("empty ext before a map", []byte{0x92, 0xc7, 0x00, 0x01, 0x80}, newOf[[]map[string]any](), newOf[[]any]())
	add("empty ext before nil", []byte{0x92, 0xc7, 0x00, 0x01, 0xc0}, newOf[[]map[string]any](), newOf[[]any]())
	// A nil code starting an extension payload: on the map path msgpack v5
	// would return a nil map and go on reading inside the payload, here an
	// array32 header.
	add("nil then array32 in extension", []byte{0xc7, 0x06, 0x00, 0xc0, 0xdd, 0xff, 0xff, 0xff, 0xff},
		newOf[map[string]any](), newOf[map[string]string]())
	// The same inside an array-encoded struct: after the nil map for A, the
	// decoder would read the array header inside the payload for B.
	add("nil then array32 in extension, in a struct", []byte{0x92, 0xc7, 0x06, 0x00, 0xc0, 0xdd, 0x01, 0x00, 0x00, 0x00, 0x01},
		newOf[struct {
			A map[string]any
			B []int
		}]())
	return cases
}()

var jsonHostile = func() []hostileCase {
	valid, err := JSON{}.Marshal(sampleOuter())
	if err != nil {
		panic(err)
	}
	var cases []hostileCase
	add := func(name string, data []byte, into ...func() any) {
		for _, f := range into {
			cases = append(cases, hostileCase{name: name, data: data, into: f})
		}
	}
	add("100000 nested arrays", repeat([]byte("["), 100000), newOf[any](), newOf[[]any]())
	add("100000 nested closed arrays", concat(repeat([]byte("["), 100000), repeat([]byte("]"), 100000)), newOf[any]())
	add("100000 nested objects", repeat([]byte(`{"a":`), 100000), newOf[any](), newOf[hostileStruct]())
	add("brackets hidden in strings are not nesting", []byte(`["`+strings.Repeat("[", 1000)+`\"`), newOf[any]())
	add("empty input", []byte{}, newOf[any](), newOf[int]())
	add("white space only", []byte(" \n\t"), newOf[any]())
	add("truncated", valid[:len(valid)-1], newOf[outer](), newOf[any]())
	add("trailing garbage", concat(valid, []byte("x")), newOf[outer](), newOf[any]())
	add("two values", []byte("1 2"), newOf[int](), newOf[any]())
	add("invalid token", []byte("nul"), newOf[any]())
	add("bad escape", []byte(`"\x"`), newOf[string]())
	add("NaN literal", []byte("NaN"), newOf[float64]())
	return cases
}()

func runHostile(t *testing.T, s Serializer, cases []hostileCase) {
	for _, c := range cases {
		v := c.into()
		t.Run(c.name+"/"+strings.TrimPrefix(typeName(v), "*"), func(t *testing.T) {
			var err error
			alloc, elapsed := measure(func() { err = s.Unmarshal(c.data, v) })
			if err == nil {
				t.Fatalf("Unmarshal(% .20x...) into %T succeeded", c.data, v)
			}
			if !c.wellFormed && !errors.Is(err, ErrMalformed) {
				t.Errorf("error does not match ErrMalformed: %v", err)
			}
			if alloc > maxHostileAlloc {
				t.Errorf("allocated %d bytes, want at most %d (err: %v)", alloc, maxHostileAlloc, err)
			}
			if elapsed > 2*time.Second {
				t.Errorf("took %v", elapsed)
			}
			if len(err.Error()) > 300 {
				t.Errorf("error message of %d bytes: %.300s...", len(err.Error()), err)
			}
		})
	}
}

func typeName(v any) string {
	return strings.ReplaceAll(strings.ReplaceAll(fmt.Sprintf("%T", v), " ", ""), "serializer.", "")
}

// measure returns the bytes allocated while f runs, and how long it took.
// The tests that call it do not run in parallel, so other goroutines add
// little.
func measure(f func()) (uint64, time.Duration) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	f()
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, elapsed
}

func TestMsgPackHostile(t *testing.T) { runHostile(t, MsgPack{}, msgpackHostile) }

func TestJSONHostile(t *testing.T) { runHostile(t, JSON{}, jsonHostile) }

func TestLimits(t *testing.T) {
	deep3 := map[string]Serializer{"JSON": JSON{MaxDepth: 3}, "MsgPack": MsgPack{MaxDepth: 3}}
	for name, s := range deep3 {
		ok, _ := s.Marshal([]any{[]any{[]any{1}}}) // depth 3
		var v any
		if err := s.Unmarshal(ok, &v); err != nil {
			t.Errorf("%s: depth 3 with MaxDepth 3: %v", name, err)
		}
		tooDeep, _ := MsgPack{}.Marshal([]any{[]any{[]any{[]any{}}}})
		if name == "JSON" {
			tooDeep = []byte(`[[[{}]]]`)
		}
		err := s.Unmarshal(tooDeep, &v)
		if !errors.Is(err, ErrMalformed) || !errors.Is(err, ErrLimitExceeded) {
			t.Errorf("%s: depth 4 with MaxDepth 3: %v", name, err)
		}
	}

	// The default depth limit.
	for name, s := range map[string]Serializer{"JSON": JSON{}, "MsgPack": MsgPack{}} {
		nest := func(n int) []byte {
			if name == "JSON" {
				return []byte(strings.Repeat("[", n) + strings.Repeat("]", n))
			}
			return append(repeat([]byte{0x91}, n-1), 0x90)
		}
		var v any
		if err := s.Unmarshal(nest(DefaultMaxDepth), &v); err != nil {
			t.Errorf("%s: depth %d: %v", name, DefaultMaxDepth, err)
		}
		if err := s.Unmarshal(nest(DefaultMaxDepth+1), &v); !errors.Is(err, ErrLimitExceeded) {
			t.Errorf("%s: depth %d: %v", name, DefaultMaxDepth+1, err)
		}
	}

	small := map[string]Serializer{"JSON": JSON{MaxSize: 10}, "MsgPack": MsgPack{MaxSize: 10}}
	for name, s := range small {
		var str string
		fits, _ := s.Marshal("12345678")
		if err := s.Unmarshal(fits, &str); err != nil {
			t.Errorf("%s: %d bytes with MaxSize 10: %v", name, len(fits), err)
		}
		big, _ := MsgPack{}.Marshal(strings.Repeat("x", 20))
		if name == "JSON" {
			big, _ = JSON{}.Marshal(strings.Repeat("x", 20))
		}
		err := s.Unmarshal(big, &str)
		if !errors.Is(err, ErrMalformed) || !errors.Is(err, ErrLimitExceeded) {
			t.Errorf("%s: %d bytes with MaxSize 10: %v", name, len(big), err)
		}
	}
}

// TestMalformedLeavesDestinationAlone checks the documented promise that v
// is untouched when the input is malformed.
func TestMalformedLeavesDestinationAlone(t *testing.T) {
	for _, c := range codecs {
		b, _ := c.s.Marshal(inner{A: 1, B: "new"})
		v := inner{A: 9, B: "old"}
		if err := c.s.Unmarshal(b[:len(b)-1], &v); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", c.name, err)
		}
		if v != (inner{A: 9, B: "old"}) {
			t.Errorf("%s: destination changed to %+v", c.name, v)
		}
	}
}

func TestSyntaxErrorReachable(t *testing.T) {
	err := JSON{}.Unmarshal([]byte("{"), new(any))
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("not ErrMalformed: %v", err)
	}
	if !strings.Contains(err.Error(), "serializer: json:") {
		t.Errorf("message %q lacks its prefix", err)
	}
}

func TestMsgPackPanicRecovered(t *testing.T) {
	// A map whose key is an array is well formed, but an array cannot be
	// the key of a Go map: msgpack v5 panics, and Unmarshal reports it.
	data := []byte{0x81, 0x91, 0x01, 0x01}
	var m map[any]any
	err := MsgPack{}.Unmarshal(data, &m)
	if err == nil || !strings.Contains(err.Error(), "panic") {
		t.Fatalf("got %v, want the recovered panic", err)
	}
	// The next call still works.
	var n int
	if err := (MsgPack{}).Unmarshal([]byte{0x05}, &n); err != nil || n != 5 {
		t.Fatalf("after a recovered panic: %d, %v", n, err)
	}
}

func TestMsgPackExtensionPayloadsStillDecode(t *testing.T) {
	// A time whose 8-byte extension payload starts with a map code (the
	// nanoseconds put 0x80..0x8f in the first byte) must still decode: only
	// reading it as a map is refused.
	tm := time.Unix(1700000000, 550_000_000).UTC()
	b, err := MsgPack{}.Marshal(tm)
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != 0xd7 || !isMsgpackMapLenCode(b[2]) {
		t.Fatalf("test value encodes as % x; want a fixext8 payload starting with a map code", b)
	}
	for _, v := range []any{new(time.Time), new(any)} {
		if err := (MsgPack{}).Unmarshal(b, v); err != nil {
			t.Errorf("into %T: %v", v, err)
		}
	}
	got := roundTrip(t, MsgPack{}, map[string]time.Time{"t": tm})
	if !got["t"].Equal(tm) {
		t.Errorf("got %v", got)
	}
	// Into a map, the same bytes are refused, not read as a map.
	err = MsgPack{}.Unmarshal(b, new(map[string]any))
	if !errors.Is(err, ErrMalformed) {
		t.Errorf("time into a map: %v", err)
	}
}
