package serializer

import (
	"errors"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// panicky panics in its DecodeMsgpack method.
type panicky struct{}

func (*panicky) DecodeMsgpack(*msgpack.Decoder) error { panic("boom") }

// TestMsgPackNeverPanics checks what cachekit's Typed relies on to call
// MsgPack's Unmarshal without a recover of its own: it returns panics as
// errors.
func TestMsgPackNeverPanics(t *testing.T) {
	for _, ser := range []Serializer{MsgPack{}, &MsgPack{}} {
		var n int
		if err := ser.Unmarshal([]byte{0x05}, &n); err != nil || n != 5 {
			t.Errorf("%T: %d, %v", ser, n, err)
		}
		// Panics, in the decoder and in a custom decoding method.
		err := ser.Unmarshal([]byte{0x81, 0x91, 0x01, 0x01}, new(map[any]any))
		if err == nil || !strings.Contains(err.Error(), "panic") {
			t.Errorf("%T: array as a map key: %v, want the recovered panic", ser, err)
		}
		err = ser.Unmarshal([]byte{0x01}, new(panicky))
		if err == nil || !strings.Contains(err.Error(), "boom") {
			t.Errorf("%T: panicking DecodeMsgpack: %v, want the recovered panic", ser, err)
		}
		if err := ser.Unmarshal([]byte{0x06}, &n); err != nil || n != 6 {
			t.Errorf("%T: after recovered panics: %d, %v", ser, n, err)
		}
		// Hostile input is refused as ever.
		if err := ser.Unmarshal([]byte{0xdd, 0xff, 0xff, 0xff, 0xff}, new([]int)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%T: array32 of 4G elements: %v, want ErrMalformed", ser, err)
		}
	}
}

// TestMsgPackPanicNestedRecovered: a panic in a custom decoder nested
// inside a struct is an error too.
func TestMsgPackPanicNestedRecovered(t *testing.T) {
	type outer struct{ P panicky }
	data, err := msgpack.Marshal(map[string]int{"P": 1})
	if err != nil {
		t.Fatal(err)
	}
	err = MsgPack{}.Unmarshal(data, new(outer))
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("got %v, want the recovered panic", err)
	}
}
