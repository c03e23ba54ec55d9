package serializer

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// The amplification tests decode inputs built to make a decoder allocate as
// much as possible per byte, into many destination types, and measure the
// bytes allocated (runtime.MemStats.TotalAlloc): every decode, accepted or
// refused, must stay within AllocFactor times the input plus AllocSlack.
// The inputs are a few hundred kilobytes, so that the factor, not the
// slack, is what binds.

type big512 struct{ B [512]byte }

type withSlices struct {
	Name  string         `json:"name" msgpack:"name"`
	Items []big512       `json:"items"`
	Ptrs  []*big512      `json:"ptrs"`
	Meta  map[string]any `json:"meta"`
	Next  *withSlices    `json:"next"`
}

type ampCase struct {
	name string
	data []byte
	into func() any
}

func mpArray(n int) []byte { return []byte{0xdd, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)} }
func mpMap(n int) []byte   { return []byte{0xdf, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)} }

// mpKeys is a map of n distinct 4-byte keys, each with value v.
func mpKeys(n int, v []byte) []byte {
	b := mpMap(n)
	for i := range n {
		b = append(b, 0xa4, byte('a'+i%26), byte('a'+i/26%26), byte('a'+i/676%26), byte('a'+i/17576%26))
		b = append(b, v...)
	}
	return b
}

func jsonRepeat(open, item, close string, n int) []byte {
	var b strings.Builder
	b.WriteString(open)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(item)
	}
	b.WriteString(close)
	return []byte(b.String())
}

func jsonKeys(n int, v string) []byte {
	var b strings.Builder
	b.WriteByte('{')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:%s", "k"+strconv.Itoa(i), v)
	}
	b.WriteByte('}')
	return []byte(b.String())
}

var msgpackAmplifiers = func() []ampCase {
	const n = 100000
	arr := func(item []byte) []byte { return concat(mpArray(n), repeat(item, n)) }
	deep := concat(repeat([]byte{0x91}, 500), []byte{0xc0})
	deepMaps := concat(repeat([]byte{0x81, 0xa0}, 500), []byte{0xc0})
	// Many arrays each nested 100 deep.
	deepMany := concat(mpArray(n/100), repeat(concat(repeat([]byte{0x91}, 99), []byte{0x90}), n/100))
	return []ampCase{
		{"[{\"\":nil}...]", arr([]byte{0x81, 0xa0, 0xc0}), newOf[any]()},
		{"[{\"\":nil}...]", arr([]byte{0x81, 0xa0, 0xc0}), newOf[[]map[string]any]()},
		{"[{\"\":nil}...]", arr([]byte{0x81, 0xa0, 0xc0}), newOf[[]map[string]*big512]()},
		{"[{}...]", arr([]byte{0x80}), newOf[any]()},
		{"[{}...]", arr([]byte{0x80}), newOf[[]map[string]int]()},
		{"[{}...]", arr([]byte{0x80}), newOf[[]*big512]()},
		{"[{}...]", arr([]byte{0x80}), newOf[[]withSlices]()},
		{"[nil...]", arr([]byte{0xc0}), newOf[[]big512]()},
		{"[nil...]", arr([]byte{0xc0}), newOf[[][4096]byte]()},
		{"[nil...]", arr([]byte{0xc0}), newOf[[]*big512]()},
		{"[nil...]", arr([]byte{0xc0}), newOf[any]()},
		{"[[]...]", arr([]byte{0x90}), newOf[any]()},
		{"[[]...]", arr([]byte{0x90}), newOf[[][]big512]()},
		{"[[nil]...]", arr([]byte{0x91, 0xc0}), newOf[[][]big512]()},
		{"[\"\"...]", arr([]byte{0xa0}), newOf[any]()},
		{"[\"a\"...]", arr([]byte{0xa1, 'a'}), newOf[[]string]()},
		{"[bin1...]", arr([]byte{0xc4, 0x01, 'x'}), newOf[any]()},
		{"[float64...]", arr([]byte{0xcb, 0, 0, 0, 0, 0, 0, 0, 1}), newOf[any]()},
		{"[0...]", arr([]byte{0x00}), newOf[[]int64]()},
		{"[0...]", arr([]byte{0x00}), newOf[[]any]()},
		{"{k: nil...}", mpKeys(n, []byte{0xc0}), newOf[map[string]any]()},
		{"{k: {}...}", mpKeys(n, []byte{0x80}), newOf[map[string]map[string]int]()},
		{"{k: nil...}", mpKeys(n, []byte{0xc0}), newOf[map[string]big512]()},
		{"{items: [nil...]}", concat([]byte{0x81, 0xa5, 'i', 't', 'e', 'm', 's'}, arr([]byte{0xc0})), newOf[withSlices]()},
		{"{Meta: [{}...]}", concat([]byte{0x81, 0xa4, 'm', 'e', 't', 'a'}, mpKeys(n, []byte{0x80})), newOf[withSlices]()},
		{"[[items...]...] as arrays", arr([]byte{0x92, 0xa0, 0x90}), newOf[[]withSlices]()},
		{"nested 500", deep, newOf[any]()},
		{"nested maps 500", deepMaps, newOf[any]()},
		{"nested 100 x1000", deepMany, newOf[any]()},
		{"nested 100 x1000", deepMany, newOf[[][][][]any]()},
	}
}()

var jsonAmplifiers = func() []ampCase {
	const n = 50000
	deep := concat(repeat([]byte("["), 500), repeat([]byte("]"), 500))
	deepMany := jsonRepeat("[", strings.Repeat("[", 100)+strings.Repeat("]", 100), "]", n/100)
	return []ampCase{
		{"[{}...]", jsonRepeat("[", "{}", "]", n), newOf[any]()},
		{"[{}...]", jsonRepeat("[", "{}", "]", n), newOf[[]map[string]int]()},
		{"[{}...]", jsonRepeat("[", "{}", "]", n), newOf[[]*big512]()},
		{"[{}...]", jsonRepeat("[", "{}", "]", n), newOf[[]withSlices]()},
		{`[{"":null}...]`, jsonRepeat("[", `{"":null}`, "]", n), newOf[any]()},
		{`[{"":0}...]`, jsonRepeat("[", `{"":0}`, "]", n), newOf[[]map[string]*big512]()},
		{"[[]...]", jsonRepeat("[", "[]", "]", n), newOf[any]()},
		{"[[]...]", jsonRepeat("[", "[]", "]", n), newOf[[][]big512]()},
		{"[[0]...]", jsonRepeat("[", "[0]", "]", n), newOf[[][]big512]()},
		{"[null...]", jsonRepeat("[", "null", "]", n), newOf[[]big512]()},
		{"[0...]", jsonRepeat("[", "0", "]", n), newOf[[][4096]byte]()},
		{"[0...]", jsonRepeat("[", "0", "]", n), newOf[any]()},
		{"[0...]", jsonRepeat("[", "0", "]", n), newOf[[]int64]()},
		{`["a"...]`, jsonRepeat("[", `"a"`, "]", n), newOf[any]()},
		{`["\u0041"...]`, jsonRepeat("[", `"\u0041"`, "]", n), newOf[[]string]()},
		{`["AA=="...]`, jsonRepeat("[", `"AA=="`, "]", n), newOf[[][]byte]()},
		{"{k: null...}", jsonKeys(n, "null"), newOf[map[string]any]()},
		{"{k: {}...}", jsonKeys(n, "{}"), newOf[any]()},
		{"{k: 0...}", jsonKeys(n, "0"), newOf[map[string]big512]()},
		{`{"items":[null...]}`, concat([]byte(`{"items":`), jsonRepeat("[", "null", "]", n), []byte("}")), newOf[withSlices]()},
		{`{"ITEMS":[{}...]}`, concat([]byte(`{"ITEMS":`), jsonRepeat("[", "{}", "]", n), []byte("}")), newOf[withSlices]()},
		{"nested 500", deep, newOf[any]()},
		{"nested 100 x500", deepMany, newOf[any]()},
	}
}()

func runAmplifiers(t *testing.T, s Serializer, cases []ampCase) {
	for _, c := range cases {
		v := c.into()
		t.Run(c.name+"/"+strings.TrimPrefix(typeName(v), "*"), func(t *testing.T) {
			runtime.GC()
			var err error
			alloc, _ := measure(func() { err = s.Unmarshal(c.data, v) })
			limit := allocBudget(len(c.data))
			t.Logf("%d bytes: allocated %d (x%.1f), err %v", len(c.data), alloc, float64(alloc)/float64(len(c.data)), err)
			if alloc > limit {
				t.Errorf("decoding %d bytes allocated %d bytes, x%.0f; want at most %d (x%d + %d)",
					len(c.data), alloc, float64(alloc)/float64(len(c.data)), limit, AllocFactor, AllocSlack)
			}
			if err != nil && !errors.Is(err, ErrLimitExceeded) {
				t.Logf("(refused for another reason: %v)", err)
			}
		})
	}
}

func TestMsgPackAmplification(t *testing.T) { runAmplifiers(t, MsgPack{}, msgpackAmplifiers) }

func TestJSONAmplification(t *testing.T) { runAmplifiers(t, JSON{}, jsonAmplifiers) }

// TestCostEstimateErrsHigh checks the cost walk against the allocations it
// predicts, on inputs it accepts: the walk must not underestimate by more
// than a little. (The contract, checked above, has the margin between the
// estimate of ordinary input and the budget.)
func TestCostEstimateErrsHigh(t *testing.T) {
	check := func(s Serializer, c ampCase, estimate func([]byte, any) uint64) {
		v := c.into()
		est := estimate(c.data, v)
		runtime.GC()
		var err error
		alloc, _ := measure(func() { err = s.Unmarshal(c.data, v) })
		if err != nil {
			return
		}
		// 5% and 64 KiB of tolerance: the race detector's allocator
		// rounds a little differently.
		if alloc > est+est/20+64<<10 {
			t.Errorf("%T %s into %s: estimated %d bytes, allocated %d", s, c.name, typeName(v), est, alloc)
		}
	}
	for _, c := range msgpackAmplifiers {
		check(MsgPack{}, c, msgpackCost)
	}
	for _, c := range jsonAmplifiers {
		check(JSON{}, c, jsonCostOf)
	}
}

// TestLargeOrdinaryValuesDecode decodes ordinary values large enough that
// the cost walk runs: none may be refused, and each must allocate within the
// budget.
func TestLargeOrdinaryValuesDecode(t *testing.T) {
	records := make([]benchRecord, 20000)
	docs := make([]map[string]any, 20000)
	matrix := make([][]float64, 2000)
	for i := range records {
		records[i] = benchValue
		records[i].ID = int64(i)
		docs[i] = map[string]any{"id": i, "name": "user" + strconv.Itoa(i), "tags": []any{"a", "b"}, "ok": true}
	}
	for i := range matrix {
		matrix[i] = []float64{1.5, 2.5, float64(i)}
	}
	for _, s := range []Serializer{JSON{}, MsgPack{}} {
		format := fmtMsgpack
		if _, ok := s.(JSON); ok {
			format = fmtJSON
		}
		for _, tc := range []struct {
			v    any
			into func() any
		}{
			{records, newOf[[]benchRecord]()},
			{records, newOf[any]()},
			{docs, newOf[[]map[string]any]()},
			{docs, newOf[any]()},
			{matrix, newOf[[][]float64]()},
			{matrix, newOf[any]()},
		} {
			data, err := s.Marshal(tc.v)
			if err != nil {
				t.Fatal(err)
			}
			v := tc.into()
			if !shapeOf(v, format).mayExceed(len(data)) {
				t.Fatalf("%T into %s: %d bytes are not walked; make the value larger", s, typeName(v), len(data))
			}
			runtime.GC()
			alloc, _ := measure(func() { err = s.Unmarshal(data, v) })
			if err != nil {
				t.Errorf("%T: %d bytes into %s: %v", s, len(data), typeName(v), err)
				continue
			}
			if alloc > allocBudget(len(data)) {
				t.Errorf("%T: %d bytes into %s allocated %d", s, len(data), typeName(v), alloc)
			}
		}
	}
}
