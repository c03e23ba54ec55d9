package serializer_test

import (
	"bytes"
	"testing"

	"github.com/cachekit/cachekit/serializer"
)

// TestUnmarshalLeavesInputAlone checks the Serializer contract that lets
// Typed decode a cache's shared bytes: Unmarshal never writes into data,
// whether it decodes it or rejects it.
func TestUnmarshalLeavesInputAlone(t *testing.T) {
	type rec struct {
		Name string
		Tags []string
		Raw  []byte
		M    map[string]any
	}
	value := rec{Name: "n\u00e9", Tags: []string{"a", "b"}, Raw: []byte{0, 1, 2}, M: map[string]any{"x": 1.5, "y": []any{"z"}}}
	for name, ser := range map[string]serializer.Serializer{"json": serializer.JSON{}, "msgpack": serializer.MsgPack{}} {
		good, err := ser.Marshal(value)
		if err != nil {
			t.Fatal(err)
		}
		inputs := [][]byte{good, good[:len(good)/2], append(bytes.Clone(good), 0), []byte("\xdd\xff\xff\xff\xff"), []byte(`"\u00e9\n"`)}
		for _, in := range inputs {
			before := bytes.Clone(in)
			for _, dst := range []any{new(rec), new(any), new(map[string]any), new(string), new([]byte)} {
				_ = ser.Unmarshal(in, dst)
				if !bytes.Equal(in, before) {
					t.Fatalf("%s: Unmarshal(%q, %T) changed its input to %q", name, before, dst, in)
				}
			}
		}
	}
	in := []byte("raw bytes")
	var b []byte
	if err := (serializer.Raw{}).Unmarshal(in, &b); err != nil {
		t.Fatal(err)
	}
	b[0] = 'X'
	if string(in) != "raw bytes" {
		t.Fatalf("Raw: changing the decoded []byte changed the input to %q", in)
	}
}
