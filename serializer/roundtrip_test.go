package serializer

import (
	"errors"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Compile-time checks that every serializer implements the interface.
var (
	_ Serializer = JSON{}
	_ Serializer = MsgPack{}
	_ Serializer = Raw{}
)

type inner struct {
	A int
	B string
}

type Base struct {
	BaseID   int64  `json:"base_id"`
	BaseName string `json:"base_name,omitempty"`
}

type outer struct {
	Base                                     // embedded: fields are flattened
	Name      string                         `json:"name"`
	Secret    string                         `json:"-"`
	Packed    string                         `msgpack:"mp_only" json:"json_only"`
	Inner     inner                          `json:"inner"`
	PInner    *inner                         `json:"p_inner"`
	NilPtr    *inner                         `json:"nil_ptr"`
	Bytes     []byte                         `json:"bytes"`
	NilBytes  []byte                         `json:"nil_bytes"`
	Tags      []string                       `json:"tags"`
	NilTags   []string                       `json:"nil_tags"`
	EmptyTags []string                       `json:"empty_tags"`
	Counts    map[string]int                 `json:"counts"`
	NilMap    map[string]int                 `json:"nil_map"`
	EmptyMap  map[string]int                 `json:"empty_map"`
	Children  []inner                        `json:"children"`
	ByName    map[string]*inner              `json:"by_name"`
	Extra     map[string]any                 `json:"extra"`
	Nested    map[string][]map[string]string `json:"nested"`
}

func sampleOuter() outer {
	return outer{
		Base:      Base{BaseID: 7, BaseName: "base"},
		Name:      "name",
		Packed:    "packed",
		Inner:     inner{A: 1, B: "b"},
		PInner:    &inner{A: 2, B: "pb"},
		Bytes:     []byte{0, 1, 2, 0xff},
		Tags:      []string{"a", "b"},
		EmptyTags: []string{},
		Counts:    map[string]int{"x": 1, "y": -2},
		EmptyMap:  map[string]int{},
		Children:  []inner{{A: 3}, {B: "c"}},
		ByName:    map[string]*inner{"n": {A: 4}, "nil": nil},
		Extra:     map[string]any{"s": "str", "t": true, "n": nil, "l": []any{"x", "y"}, "m": map[string]any{"k": "v"}},
		Nested:    map[string][]map[string]string{"k": {{"a": "b"}, {}}},
	}
}

// roundTrip marshals in with s and unmarshals the result into a new T.
func roundTrip[T any](t *testing.T, s Serializer, in T) T {
	t.Helper()
	b, err := s.Marshal(in)
	if err != nil {
		t.Fatalf("Marshal(%#v): %v", in, err)
	}
	var out T
	if err := s.Unmarshal(b, &out); err != nil {
		t.Fatalf("Unmarshal(%x) into %T: %v", b, &out, err)
	}
	return out
}

func assertSame[T any](t *testing.T, s Serializer, in T) {
	t.Helper()
	if out := roundTrip(t, s, in); !reflect.DeepEqual(in, out) {
		t.Errorf("round trip changed the value:\n in: %#v\nout: %#v", in, out)
	}
}

var codecs = []struct {
	name string
	s    Serializer
}{
	{"JSON", JSON{}},
	{"MsgPack", MsgPack{}},
}

func TestRoundTripScalars(t *testing.T) {
	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			s := c.s
			assertSame(t, s, int64(math.MinInt64))
			assertSame(t, s, int64(math.MaxInt64))
			assertSame(t, s, int64(0))
			assertSame(t, s, int64(-1))
			assertSame(t, s, uint64(math.MaxUint64))
			assertSame(t, s, uint64(0))
			assertSame(t, s, int8(math.MinInt8))
			assertSame(t, s, int32(math.MinInt32))
			assertSame(t, s, uint32(math.MaxUint32))
			assertSame(t, s, math.MaxInt)
			assertSame(t, s, math.MinInt)
			assertSame(t, s, math.MaxFloat64)
			assertSame(t, s, math.SmallestNonzeroFloat64)
			assertSame(t, s, float32(math.MaxFloat32))
			assertSame(t, s, 0.1)
			assertSame(t, s, true)
			assertSame(t, s, "")
			assertSame(t, s, "héllo \x00 \"quoted\" <tag> ✓")
			assertSame(t, s, []int64{math.MinInt64, math.MaxInt64})
			assertSame(t, s, []uint64{0, math.MaxUint64})
			assertSame(t, s, time.Duration(math.MaxInt64))
		})
	}
}

func TestRoundTripStructs(t *testing.T) {
	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			in := sampleOuter()
			out := roundTrip(t, c.s, in)

			want := in
			want.Secret = "" // json:"-" is never encoded
			if !reflect.DeepEqual(want, out) {
				t.Errorf("round trip changed the value:\n in: %#v\nout: %#v", want, out)
			}

			// Pointer to a struct, and nil pointer.
			p := roundTrip(t, c.s, &in.Inner)
			if p == nil || *p != in.Inner {
				t.Errorf("pointer round trip: got %#v, want %#v", p, in.Inner)
			}
			if p := roundTrip(t, c.s, (*inner)(nil)); p != nil {
				t.Errorf("nil pointer round trip: got %#v, want nil", p)
			}
		})
	}
}

// TestFieldNames asserts which names each serializer writes: MsgPack
// honours msgpack tags, falls back to json tags, and flattens embedded
// structs as encoding/json does.
func TestFieldNames(t *testing.T) {
	in := sampleOuter()
	in.Secret = "secret"

	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			b, err := c.s.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := c.s.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"base_id", "base_name", "name", "inner", "p_inner", "tags"} {
				if _, ok := m[k]; !ok {
					t.Errorf("key %q missing from %v", k, keys(m))
				}
			}
			for _, k := range []string{"Secret", "-", "Base", "BaseID", "Name"} {
				if _, ok := m[k]; ok {
					t.Errorf("key %q present in %v", k, keys(m))
				}
			}
			packed := "json_only"
			if c.name == "MsgPack" {
				packed = "mp_only"
			}
			if m[packed] != "packed" {
				t.Errorf("key %q = %v, want \"packed\" (keys %v)", packed, m[packed], keys(m))
			}
		})
	}
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// TestNilAndEmpty asserts what each serializer preserves: both keep nil
// slices and maps nil, and empty ones empty and non-nil.
func TestNilAndEmpty(t *testing.T) {
	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			s := c.s
			if got := roundTrip(t, s, []int(nil)); got != nil {
				t.Errorf("nil slice: got %#v, want nil", got)
			}
			if got := roundTrip(t, s, []int{}); got == nil || len(got) != 0 {
				t.Errorf("empty slice: got %#v, want non-nil empty", got)
			}
			if got := roundTrip(t, s, []byte(nil)); got != nil {
				t.Errorf("nil []byte: got %#v, want nil", got)
			}
			if got := roundTrip(t, s, []byte{}); got == nil || len(got) != 0 {
				t.Errorf("empty []byte: got %#v, want non-nil empty", got)
			}
			if got := roundTrip(t, s, map[string]int(nil)); got != nil {
				t.Errorf("nil map: got %#v, want nil", got)
			}
			if got := roundTrip(t, s, map[string]int{}); got == nil || len(got) != 0 {
				t.Errorf("empty map: got %#v, want non-nil empty", got)
			}
			if got := roundTrip(t, s, map[string]any(nil)); got != nil {
				t.Errorf("nil map[string]any: got %#v, want nil", got)
			}
			if got := roundTrip(t, s, map[string]any{}); got == nil || len(got) != 0 {
				t.Errorf("empty map[string]any: got %#v, want non-nil empty", got)
			}
			if got := roundTrip(t, s, any(nil)); got != nil {
				t.Errorf("nil any: got %#v, want nil", got)
			}
			assertSame(t, s, [][]int{nil, {}, {1}})
			assertSame(t, s, []byte{1, 2, 3})
			assertSame(t, s, [4]byte{1, 2, 3, 4})
		})
	}
}

func TestRoundTripAny(t *testing.T) {
	// Values chosen to come back with the same dynamic types from both
	// formats: strings, bools, nil, float64 that is not an integer, and
	// containers of those.
	in := map[string]any{
		"s": "x", "t": true, "f": false, "n": nil, "x": 1.5,
		"l": []any{"a", 2.5, nil, []any{}, map[string]any{}},
		"m": map[string]any{"deep": map[string]any{"er": []any{"y"}}},
	}
	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			assertSame(t, c.s, in)
			var out any
			b, err := c.s.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.s.Unmarshal(b, &out); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(any(in), out) {
				t.Errorf("into *any: got %#v", out)
			}
		})
	}
}

// TestAnyNumbers documents the dynamic types numbers get when decoded into
// an interface.
func TestAnyNumbers(t *testing.T) {
	in := map[string]any{"small": 5, "neg": -300, "big": uint64(math.MaxUint64), "f32": float32(1.5), "bin": []byte{1}}

	got := roundTrip(t, MsgPack{}, in)
	want := map[string]any{"small": int8(5), "neg": int16(-300), "big": uint64(math.MaxUint64), "f32": float32(1.5), "bin": []byte{1}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("MsgPack: got %#v, want %#v", got, want)
	}

	got = roundTrip(t, JSON{}, in)
	want = map[string]any{"small": 5.0, "neg": -300.0, "big": float64(math.MaxUint64), "f32": 1.5, "bin": "AQ=="}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("JSON: got %#v, want %#v", got, want)
	}
}

func TestFloatSpecials(t *testing.T) {
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), math.Copysign(0, -1)} {
		got := roundTrip(t, MsgPack{}, f)
		if math.Float64bits(got) != math.Float64bits(f) && !(math.IsNaN(f) && math.IsNaN(got)) {
			t.Errorf("MsgPack %v: got %v", f, got)
		}
		got32 := roundTrip(t, MsgPack{}, float32(f))
		if !(math.IsNaN(f) && math.IsNaN(float64(got32))) && float64(got32) != f {
			t.Errorf("MsgPack float32 %v: got %v", f, got32)
		}
		gotAny := roundTrip(t, MsgPack{}, map[string]any{"f": f})
		if g, ok := gotAny["f"].(float64); !ok || !(g == f || (math.IsNaN(f) && math.IsNaN(g))) {
			t.Errorf("MsgPack any %v: got %#v", f, gotAny["f"])
		}
	}
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if b, err := (JSON{}).Marshal(f); err == nil {
			t.Errorf("JSON Marshal(%v) = %q, want an error", f, b)
		}
		if b, err := (JSON{}).Marshal(struct{ F []float64 }{[]float64{1, f}}); err == nil {
			t.Errorf("JSON Marshal(nested %v) = %q, want an error", f, b)
		}
	}
}

func TestTime(t *testing.T) {
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	now := time.Now() // carries a monotonic clock reading
	times := []time.Time{
		now.In(zone),
		now,
		time.Date(1969, 7, 20, 20, 17, 40, 123456789, zone),
		time.Date(2262, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Nanosecond),
		{},
	}
	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			for _, in := range times {
				out := roundTrip(t, c.s, in)
				if !out.Equal(in) {
					t.Errorf("%v: got %v", in, out)
				}
				if out != out.Round(0) {
					t.Errorf("%v: decoded value has a monotonic reading", in)
				}
				if c.name == "JSON" {
					_, inOff := in.Zone()
					_, outOff := out.Zone()
					if inOff != outOff {
						t.Errorf("JSON keeps the UTC offset: got %d, want %d", outOff, inOff)
					}
				}
				if in.IsZero() && !out.IsZero() {
					t.Errorf("zero time: got %v", out)
				}
				type withTime struct {
					T  time.Time  `json:"t"`
					TP *time.Time `json:"tp"`
				}
				w := roundTrip(t, c.s, withTime{T: in, TP: &in})
				if !w.T.Equal(in) || w.TP == nil || !w.TP.Equal(in) {
					t.Errorf("in a struct %v: got %v, %v", in, w.T, w.TP)
				}
			}
		})
	}
}

func TestErrorsOnBadDestination(t *testing.T) {
	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			b, err := c.s.Marshal(1)
			if err != nil {
				t.Fatal(err)
			}
			var n int
			if err := c.s.Unmarshal(b, n); err == nil {
				t.Error("Unmarshal into a non-pointer succeeded")
			}
			if err := c.s.Unmarshal(b, (*int)(nil)); err == nil {
				t.Error("Unmarshal into a nil pointer succeeded")
			}
			if err := c.s.Unmarshal(b, nil); err == nil {
				t.Error("Unmarshal into nil succeeded")
			}
			var s struct{ A int }
			err = c.s.Unmarshal(b, &s)
			if err == nil {
				t.Error("Unmarshal of a number into a struct succeeded")
			} else if errors.Is(err, ErrMalformed) {
				t.Errorf("a type mismatch is not malformed input: %v", err)
			}
		})
	}
}

func TestMarshalUnsupported(t *testing.T) {
	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			if _, err := c.s.Marshal(make(chan int)); err == nil {
				t.Error("Marshal(chan) succeeded")
			} else if c.name == "JSON" && !errors.Is(err, ErrUnsupportedType) {
				t.Errorf("Marshal(chan): %v does not match ErrUnsupportedType", err)
			}
			if _, err := c.s.Marshal(func() {}); err == nil {
				t.Error("Marshal(func) succeeded")
			}
		})
	}
}

func TestMarshalRefusesWhatUnmarshalRejects(t *testing.T) {
	deep := any("leaf")
	for range 10 {
		deep = []any{deep}
	}
	for _, s := range []Serializer{JSON{MaxDepth: 5}, MsgPack{MaxDepth: 5}} {
		_, err := s.Marshal(deep)
		if !errors.Is(err, ErrLimitExceeded) || errors.Is(err, ErrMalformed) {
			t.Errorf("%T: Marshal of depth 10 with MaxDepth 5: %v", s, err)
		}
	}
	for _, s := range []Serializer{JSON{MaxDepth: 10}, MsgPack{MaxDepth: 10}} {
		b, err := s.Marshal(deep)
		if err != nil {
			t.Errorf("%T: Marshal of depth 10 with MaxDepth 10: %v", s, err)
		}
		var out any
		if err := s.Unmarshal(b, &out); err != nil {
			t.Errorf("%T: Unmarshal of depth 10 with MaxDepth 10: %v", s, err)
		}
	}
	long := make([]byte, 100)
	for _, s := range []Serializer{JSON{MaxSize: 50}, MsgPack{MaxSize: 50}} {
		if _, err := s.Marshal(long); !errors.Is(err, ErrLimitExceeded) {
			t.Errorf("%T: Marshal of 100 bytes with MaxSize 50: %v", s, err)
		}
	}
}

// TestPooledStateDoesNotLeak checks that a type's custom decoder changing
// the pooled decoder's settings does not affect the next Unmarshal.
func TestPooledStateDoesNotLeak(t *testing.T) {
	b, err := MsgPack{}.Marshal(map[string]any{"n": 1})
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		var l looseDecoder
		if err := (MsgPack{}).Unmarshal(b, &l); err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := (MsgPack{}).Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if _, ok := m["n"].(int8); !ok {
			t.Fatalf("decoder settings leaked through the pool: got %T", m["n"])
		}
	}
}

type looseDecoder struct{ v any }

func (l *looseDecoder) DecodeMsgpack(d *msgpack.Decoder) error {
	d.UseLooseInterfaceDecoding(true)
	var err error
	l.v, err = d.DecodeInterface()
	return err
}

func TestConcurrentUse(t *testing.T) {
	in := sampleOuter()
	done := make(chan error)
	for range 8 {
		go func() {
			for _, c := range codecs {
				for range 50 {
					b, err := c.s.Marshal(in)
					if err != nil {
						done <- err
						return
					}
					var out outer
					if err := c.s.Unmarshal(b, &out); err != nil {
						done <- err
						return
					}
					if out.Name != in.Name || len(out.Children) != 2 {
						done <- errors.New("wrong value decoded")
						return
					}
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
