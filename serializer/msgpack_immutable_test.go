package serializer

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/cachekit/cachekit/internal/shareddecode"
)

// immutableMsgPack decodes with unmarshalImmutable, as Typed does for the
// bytes a SharedGetter returns.
type immutableMsgPack struct{ MsgPack }

func (m immutableMsgPack) Unmarshal(data []byte, v any) error { return m.unmarshalImmutable(data, v) }

// remembered reports whether data is in the table of checked inputs.
func remembered(data []byte, maxDepth int) bool {
	slot := checkedSlot(data)
	return slot != nil && slot.Load().holds(data, maxDepth)
}

func TestMsgPackImmutableHostile(t *testing.T) {
	// Twice: refused input is never remembered as checked.
	for range 2 {
		runHostile(t, immutableMsgPack{}, msgpackHostile)
	}
	for _, c := range msgpackHostile {
		if !c.wellFormed && remembered(c.data, DefaultMaxDepth) {
			t.Errorf("%s: refused input is remembered as checked", c.name)
		}
	}
}

func TestMsgPackImmutableRemembersByIdentity(t *testing.T) {
	data, err := MsgPack{}.Marshal(sampleOuter())
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > checkedMaxLen {
		t.Fatalf("sample of %d bytes is too long to be remembered", len(data))
	}
	var first, second outer
	if err := (MsgPack{}).unmarshalImmutable(data, &first); err != nil {
		t.Fatal(err)
	}
	if !remembered(data, DefaultMaxDepth) {
		t.Fatal("checked immutable input is not remembered")
	}
	if remembered(bytes.Clone(data), DefaultMaxDepth) {
		t.Error("a copy at another address is remembered: the table must match bytes by identity")
	}
	if remembered(data[:len(data)-1], DefaultMaxDepth) {
		t.Error("a prefix of remembered input is remembered")
	}
	if remembered(data, DefaultMaxDepth+1) {
		t.Error("input checked with one MaxDepth is remembered for another")
	}
	// The remembered decode gives the same value.
	if err := (MsgPack{}).unmarshalImmutable(data, &second); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(first, second) {
		t.Errorf("second decode differs:\n%#v\n%#v", first, second)
	}

	// Unmarshal, whose caller may change its input, neither fills nor uses
	// the table.
	other := bytes.Clone(data)
	if err := (MsgPack{}).Unmarshal(other, new(outer)); err != nil {
		t.Fatal(err)
	}
	if remembered(other, DefaultMaxDepth) {
		t.Error("Unmarshal remembered its input")
	}
}

func TestMsgPackUnmarshalChecksRememberedBytes(t *testing.T) {
	// Bytes that unmarshalImmutable checked, then changed in place (which
	// a caller of Unmarshal may do, and a SharedGetter never does): the
	// public Unmarshal checks them again and refuses them. (The change
	// nests them too deep, which the decoder alone would accept.)
	m := MsgPack{MaxDepth: 2}
	data := []byte{0x95, 0x01, 0x02, 0x03, 0x04, 0x05}
	var v any
	if err := m.unmarshalImmutable(data, &v); err != nil {
		t.Fatal(err)
	}
	if !remembered(data, 2) {
		t.Fatal("not remembered")
	}
	copy(data, []byte{0x91, 0x91, 0x91, 0x91, 0x91, 0x01}) // [[[[[1]]]]]
	var w any
	err := m.Unmarshal(data, &w)
	if !errors.Is(err, ErrLimitExceeded) {
		t.Fatalf("Unmarshal of changed bytes: %v (decoded %v), want ErrLimitExceeded", err, w)
	}
}

func TestMsgPackImmutableLimits(t *testing.T) {
	// MaxDepth: input remembered under the default depth is checked again
	// under a smaller one.
	deep := []byte{0x91, 0x91, 0x91, 0x01}
	if err := (MsgPack{}).unmarshalImmutable(deep, new(any)); err != nil {
		t.Fatal(err)
	}
	err := MsgPack{MaxDepth: 2}.unmarshalImmutable(deep, new(any))
	if !errors.Is(err, ErrLimitExceeded) {
		t.Errorf("depth 3 with MaxDepth 2: %v, want ErrLimitExceeded", err)
	}
	// MaxSize applies on every call.
	err = MsgPack{MaxSize: 3}.unmarshalImmutable(deep, new(any))
	if !errors.Is(err, ErrLimitExceeded) {
		t.Errorf("4 bytes with MaxSize 3: %v, want ErrLimitExceeded", err)
	}

	// Long input is not remembered: the table holds what it remembers in
	// memory, so it bounds each entry.
	long, err := MsgPack{}.Marshal(strings.Repeat("x", checkedMaxLen))
	if err != nil {
		t.Fatal(err)
	}
	var s string
	if err := (MsgPack{}).unmarshalImmutable(long, &s); err != nil || len(s) != checkedMaxLen {
		t.Fatalf("decoded %d bytes, %v", len(s), err)
	}
	if remembered(long, DefaultMaxDepth) {
		t.Errorf("input of %d bytes is remembered; the limit is %d", len(long), checkedMaxLen)
	}

	// Input that needs traps (an extension payload the decoder must not
	// read as a map) is not remembered, and is still refused into a map.
	extMap := []byte{0xc7, 0x02, 0x05, 0x80, 0x00}
	for range 2 {
		err = MsgPack{}.unmarshalImmutable(extMap, new(map[string]any))
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("extension read as a map: %v, want ErrMalformed", err)
		}
	}
	if remembered(extMap, DefaultMaxDepth) {
		t.Error("input with traps is remembered")
	}
}

type panicky struct{}

func (*panicky) DecodeMsgpack(*msgpack.Decoder) error { panic("boom") }

func TestMsgPackImmutablePanicRecovered(t *testing.T) {
	// As in TestMsgPackPanicRecovered: the panic comes back as an error,
	// the first time (when the input is checked) and the second (when it
	// is remembered).
	data := []byte{0x81, 0x91, 0x01, 0x01}
	for range 2 {
		var m map[any]any
		err := MsgPack{}.unmarshalImmutable(data, &m)
		if err == nil || !strings.Contains(err.Error(), "panic") {
			t.Fatalf("got %v, want the recovered panic", err)
		}
	}
	// A custom decoder that panics.
	p := []byte{0x01}
	for range 2 {
		err := MsgPack{}.unmarshalImmutable(p, new(panicky))
		if err == nil || !strings.Contains(err.Error(), "boom") {
			t.Fatalf("got %v, want the recovered panic", err)
		}
	}
	var n int
	if err := (MsgPack{}).unmarshalImmutable([]byte{0x05}, &n); err != nil || n != 5 {
		t.Fatalf("after a recovered panic: %d, %v", n, err)
	}
}

func TestSharedDecodeRegistered(t *testing.T) {
	data := []byte{0x05}
	for _, ser := range []any{MsgPack{}, &MsgPack{}} {
		f := shareddecode.For(ser)
		if f == nil {
			t.Fatalf("%T: no immutable-input decoder registered", ser)
		}
		var n int
		if err := f(data, &n); err != nil || n != 5 {
			t.Errorf("%T: %d, %v", ser, n, err)
		}
	}
	// A *MsgPack is read on every call, as its Unmarshal reads it.
	m := &MsgPack{}
	f := shareddecode.For(m)
	m.MaxSize = 1
	if err := f([]byte{0x92, 0x01, 0x02}, new([]int)); !errors.Is(err, ErrLimitExceeded) {
		t.Errorf("after setting MaxSize through the pointer: %v, want ErrLimitExceeded", err)
	}
	for _, ser := range []any{JSON{}, Raw{}, (*MsgPack)(nil), nil} {
		if shareddecode.For(ser) != nil {
			t.Errorf("%T has an immutable-input decoder", ser)
		}
	}
}
