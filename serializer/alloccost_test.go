package serializer

import (
	"encoding/json"
	"errors"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// These tests hold Marshal to the promise of ErrLimitExceeded: JSON and
// MsgPack never produce bytes that their own Unmarshal, with the same
// settings, refuses. The decode budget counts what decoding allocates,
// and a type can take far more memory than its encoding when much of it is
// not encoded: footprintItem encodes two small fields but is 2 KiB in
// every array that holds it.

type footprintItem struct {
	ID      int
	Name    string
	scratch [2048]byte
}

// footprintDash is footprintItem with the large field exported but
// excluded from both encodings by its tag.
type footprintDash struct {
	ID      int        `json:"id"`
	Name    string     `json:"name"`
	Scratch [2048]byte `json:"-"`
}

type footprintHolder struct {
	Items []footprintItem  `json:"items"`
	Next  *footprintHolder `json:"next,omitempty"`
}

func footprintItems(n int) []footprintItem {
	items := make([]footprintItem, n)
	for i := range items {
		items[i] = footprintItem{ID: i, Name: "x"}
	}
	return items
}

// TestFootprintRoundTrip is the red-team's example: 300 such items (6.5 KB
// of JSON, 3.8 KB of msgpack, 1.3 MB of arrays when decoded) were encoded
// without error and then refused by Unmarshal, so a Typed cache of them
// never hit. They fit the default budget and must round-trip.
func TestFootprintRoundTrip(t *testing.T) {
	items := footprintItems(300)
	for _, c := range codecs {
		b, err := c.s.Marshal(items)
		if err != nil {
			t.Fatalf("%s: Marshal of 300 items: %v", c.name, err)
		}
		var back []footprintItem
		if err := c.s.Unmarshal(b, &back); err != nil {
			t.Fatalf("%s: Unmarshal of its own %d bytes: %v", c.name, len(b), err)
		}
		if !reflect.DeepEqual(back, items) {
			t.Errorf("%s: the items did not round-trip", c.name)
		}
	}
}

// TestFootprintOverBudget: 1000 such items decode into 4-7 MB of arrays,
// over the default budget for their 14-22 KB. Marshal must refuse them with
// ErrLimitExceeded alone, naming the limits to raise; with the limits
// raised they round-trip; and a reader left at the defaults refuses what
// that writer stored, as ErrMalformed and ErrLimitExceeded.
func TestFootprintOverBudget(t *testing.T) {
	items := footprintItems(1000)
	raised := []Serializer{JSON{AllocFactor: 1024}, MsgPack{AllocFactor: 1024}}
	for i, c := range codecs {
		_, err := c.s.Marshal(items)
		if !errors.Is(err, ErrLimitExceeded) || errors.Is(err, ErrMalformed) {
			t.Fatalf("%s: Marshal of 1000 items: %v; want ErrLimitExceeded alone", c.name, err)
		}
		if msg := err.Error(); !strings.Contains(msg, "AllocFactor") || !strings.Contains(msg, "AllocSlack") {
			t.Errorf("%s: the error does not say which limit to raise: %v", c.name, msg)
		}

		b, err := raised[i].Marshal(items)
		if err != nil {
			t.Fatalf("%s with AllocFactor 1024: Marshal: %v", c.name, err)
		}
		var back []footprintItem
		if err := raised[i].Unmarshal(b, &back); err != nil {
			t.Fatalf("%s with AllocFactor 1024: Unmarshal: %v", c.name, err)
		}
		if !reflect.DeepEqual(back, items) {
			t.Errorf("%s with AllocFactor 1024: the items did not round-trip", c.name)
		}
		err = c.s.Unmarshal(b, &back)
		if !errors.Is(err, ErrLimitExceeded) || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: a default reader of the raised writer's bytes: %v", c.name, err)
		}

		raisedSlack := []Serializer{JSON{AllocSlack: 64 << 20}, MsgPack{AllocSlack: 64 << 20}}[i]
		if b, err = raisedSlack.Marshal(items); err != nil {
			t.Fatalf("%s with AllocSlack 64 MiB: Marshal: %v", c.name, err)
		}
		if err := raisedSlack.Unmarshal(b, &back); err != nil {
			t.Fatalf("%s with AllocSlack 64 MiB: Unmarshal: %v", c.name, err)
		}
	}
}

// TestMarshalAcceptsOnlyWhatUnmarshalAccepts is the promise as a property:
// over types that take much more memory than their encoding (large fields
// not encoded, slices of pointers to them, maps of them, nesting) and
// ordinary ones, at sizes around the budget and with several limits,
// whatever Marshal returns, Unmarshal into a value of the same type with
// the same settings accepts; and whatever it refuses, it refuses with
// ErrLimitExceeded.
func TestMarshalAcceptsOnlyWhatUnmarshalAccepts(t *testing.T) {
	type wide struct {
		A, B int64
		Pad  [64]int64 `json:"-"`
	}
	gens := map[string]func(n int) any{
		"[]footprintItem": func(n int) any { return footprintItems(n) },
		"[]footprintDash": func(n int) any {
			v := make([]footprintDash, n)
			for i := range v {
				v[i] = footprintDash{ID: i, Name: strconv.Itoa(i)}
			}
			return v
		},
		"[]*footprintItem": func(n int) any {
			v := make([]*footprintItem, n)
			for i := range v {
				if i%3 != 0 {
					v[i] = &footprintItem{ID: i}
				}
			}
			return v
		},
		"map[string]footprintItem": func(n int) any {
			v := make(map[string]footprintItem, n)
			for i := range n {
				v[strconv.Itoa(i)] = footprintItem{ID: i, Name: "n"}
			}
			return v
		},
		"map[string]*footprintDash": func(n int) any {
			v := make(map[string]*footprintDash, n)
			for i := range n {
				v["k"+strconv.Itoa(i)] = &footprintDash{ID: i}
			}
			return v
		},
		"map[int][]footprintItem": func(n int) any {
			v := make(map[int][]footprintItem)
			for i := range n / 10 {
				v[i] = footprintItems(10)
			}
			return v
		},
		"[][]wide": func(n int) any {
			v := make([][]wide, n/4)
			for i := range v {
				v[i] = make([]wide, 4)
			}
			return v
		},
		"footprintHolder": func(n int) any {
			return footprintHolder{Items: footprintItems(n / 2), Next: &footprintHolder{Items: footprintItems(n / 2)}}
		},
		"*[]footprintItem":   func(n int) any { v := footprintItems(n); return &v },
		"[][2]footprintItem": func(n int) any { return make([][2]footprintItem, n/2) },
		"[]benchRecord": func(n int) any {
			v := make([]benchRecord, n)
			for i := range v {
				v[i] = benchValue
			}
			return v
		},
		"[]map[string]any": func(n int) any {
			v := make([]map[string]any, n)
			for i := range v {
				v[i] = map[string]any{}
			}
			return v
		},
		"[][]int": func(n int) any { return make([][]int, n*8) },
	}
	settings := []struct {
		name string
		s    [2]Serializer
	}{
		{"defaults", [2]Serializer{JSON{}, MsgPack{}}},
		{"factor 8", [2]Serializer{JSON{AllocFactor: 8}, MsgPack{AllocFactor: 8}}},
		{"slack 64 KiB", [2]Serializer{JSON{AllocSlack: 64 << 10}, MsgPack{AllocSlack: 64 << 10}}},
		{"factor 512", [2]Serializer{JSON{AllocFactor: 512}, MsgPack{AllocFactor: 512}}},
	}
	sizes := []int{0, 1, 10, 100, 200, 300, 400, 600, 1000, 3000}
	refused := 0
	for name, gen := range gens {
		for _, n := range sizes {
			v := gen(n)
			for _, set := range settings {
				for _, s := range set.s {
					b, err := s.Marshal(v)
					if err != nil {
						if !errors.Is(err, ErrLimitExceeded) || errors.Is(err, ErrMalformed) {
							t.Errorf("%T %s: Marshal of %s n=%d: %v; want ErrLimitExceeded alone", s, set.name, name, n, err)
						}
						refused++
						continue
					}
					dst := reflect.New(reflect.TypeOf(v))
					if err := s.Unmarshal(b, dst.Interface()); err != nil {
						t.Errorf("%T %s: %s n=%d: Marshal gave %d bytes, Unmarshal refused them: %v", s, set.name, name, n, len(b), err)
					}
				}
			}
		}
	}
	if refused == 0 {
		t.Error("no value was over any budget: the property was not exercised")
	}
}

// TestFootprintEstimateIsTight checks that the estimate of a slice of
// large elements is close to what decoding it allocates, not a multiple:
// the budget can only be trusted by callers if values that fit are not
// refused. (TestCostEstimateErrsHigh checks that it is not below.)
func TestFootprintEstimateIsTight(t *testing.T) {
	for _, n := range []int{100, 300, 1000} {
		items := footprintItems(n)
		for _, c := range []struct {
			s        Serializer
			estimate func([]byte, any) uint64
		}{
			{JSON{AllocFactor: 1 << 20}, jsonCostOf},
			{MsgPack{AllocFactor: 1 << 20}, msgpackCost},
		} {
			b, err := c.s.Marshal(items)
			if err != nil {
				t.Fatal(err)
			}
			var back []footprintItem
			est := c.estimate(b, &back)
			runtime.GC()
			alloc, _ := measure(func() { err = c.s.Unmarshal(b, &back) })
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%T n=%d: %d bytes, estimated %d, allocated %d", c.s, n, len(b), est, alloc)
			if est > alloc+alloc/8+16<<10 {
				t.Errorf("%T n=%d: estimated %d bytes, allocated %d: more than an eighth over", c.s, n, est, alloc)
			}
		}
	}
}

// TestGrowCost checks growCost against the arrays append really allocates,
// element by element, for several element sizes, with and without
// pointers.
func TestGrowCost(t *testing.T) {
	check := func(name string, size uintptr, ptrs bool, grow func(n int)) {
		for _, n := range []int{1, 2, 5, 17, 255, 256, 257, 300, 1000, 5000} {
			runtime.GC()
			alloc, _ := measure(func() { grow(n) })
			est := growCost(uint64(n), uint64(size), ptrs)
			if est < alloc || est > alloc+alloc/8+256 {
				t.Errorf("%s n=%d: growCost %d, append allocated %d", name, n, est, alloc)
			}
		}
	}
	check("int64", 8, false, func(n int) {
		var s []int64
		for i := range n {
			s = append(s, int64(i))
		}
		growSinks.int64s = s
	})
	check("ptr16", 16, true, func(n int) {
		var s []ptr16
		for range n {
			s = append(s, ptr16{})
		}
		growSinks.ptr16s = s
	})
	check("big2072", 2072, true, func(n int) {
		var s []big2072
		for range n {
			s = append(s, big2072{})
		}
		growSinks.big2072s = s
	})
	check("[2048]byte", 2048, false, func(n int) {
		var s [][2048]byte
		for range n {
			s = append(s, [2048]byte{})
		}
		growSinks.arrays = s
	})
}

type ptr16 struct {
	p *int
	x int
}

type big2072 struct {
	s string
	b [2056]byte
}

// growSinks keeps TestGrowCost's slices alive without boxing them.
var growSinks struct {
	int64s   []int64
	ptr16s   []ptr16
	big2072s []big2072
	arrays   [][2048]byte
}

// BenchmarkMarshalAllocCheck times what Marshal adds for the decode
// budget: for a small value, a type lookup and one multiplication; for a
// value whose encoding may exceed the slack, the walk over its encoding.
func BenchmarkMarshalAllocCheck(b *testing.B) {
	var small any = benchValue
	var large any = footprintItems(300)
	for _, c := range []struct {
		name   string
		format int
		v      any
	}{
		{"json/small", fmtJSON, small},
		{"msgpack/small", fmtMsgpack, small},
		{"json/300-footprint", fmtJSON, large},
		{"msgpack/300-footprint", fmtMsgpack, large},
	} {
		var data []byte
		var err error
		if c.format == fmtJSON {
			data, err = JSON{}.Marshal(c.v)
		} else {
			data, err = MsgPack{}.Marshal(c.v)
		}
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if err := checkEncodedCost(c.format, data, c.v, defaultLimits); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMarshalFootprint marshals the red-team's 300 items, for which
// Marshal walks its output, next to the plain encoders.
func BenchmarkMarshalFootprint(b *testing.B) {
	items := footprintItems(300)
	for _, c := range []struct {
		name string
		f    func() error
	}{
		{"JSON", func() error { _, err := JSON{}.Marshal(items); return err }},
		{"json.Marshal", func() error { _, err := json.Marshal(items); return err }},
		{"MsgPack", func() error { _, err := MsgPack{}.Marshal(items); return err }},
		{"msgpack.Marshal", func() error { _, err := msgpack.Marshal(items); return err }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := c.f(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
