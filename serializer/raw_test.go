package serializer

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestRawMarshal(t *testing.T) {
	b := []byte("bytes")
	s := "string"
	type named []byte
	type namedString string
	for _, c := range []struct {
		in   any
		want string
	}{
		{b, "bytes"},
		{&b, "bytes"},
		{s, "string"},
		{&s, "string"},
		{[]byte(nil), ""},
		{[]byte{}, ""},
		{"", ""},
		{json.RawMessage(`{"a":1}`), `{"a":1}`},
		{named("n"), "n"},
		{namedString("ns"), "ns"},
		{new(namedString), ""},
	} {
		got, err := Raw{}.Marshal(c.in)
		if err != nil {
			t.Errorf("Marshal(%#v): %v", c.in, err)
			continue
		}
		if string(got) != c.want || got == nil {
			t.Errorf("Marshal(%#v) = %#v, want %q (non-nil)", c.in, got, c.want)
		}
	}

	// The result never aliases the argument.
	out, _ := Raw{}.Marshal(b)
	out[0] = 'X'
	if string(b) != "bytes" {
		t.Error("Marshal([]byte) aliased its argument")
	}
	out, _ = Raw{}.Marshal(&b)
	out[0] = 'X'
	if string(b) != "bytes" {
		t.Error("Marshal(*[]byte) aliased its argument")
	}
}

func TestRawMarshalUnsupported(t *testing.T) {
	for _, in := range []any{nil, 1, 1.5, struct{}{}, []int{1}, []string{"a"}, (*[]byte)(nil), (*string)(nil), new(int), map[string]string{}} {
		_, err := Raw{}.Marshal(in)
		if !errors.Is(err, ErrUnsupportedType) {
			t.Errorf("Marshal(%#v): %v, want ErrUnsupportedType", in, err)
		}
	}
}

func TestRawUnmarshal(t *testing.T) {
	data := []byte("payload")

	var b []byte
	if err := (Raw{}).Unmarshal(data, &b); err != nil || string(b) != "payload" {
		t.Fatalf("into *[]byte: %q, %v", b, err)
	}
	b[0] = 'X'
	if string(data) != "payload" {
		t.Error("Unmarshal aliased data")
	}

	var s string
	if err := (Raw{}).Unmarshal(data, &s); err != nil || s != "payload" {
		t.Fatalf("into *string: %q, %v", s, err)
	}

	// A stored empty value is a non-nil empty slice.
	for _, in := range [][]byte{nil, {}} {
		b = []byte("old")
		if err := (Raw{}).Unmarshal(in, &b); err != nil || b == nil || len(b) != 0 {
			t.Errorf("Unmarshal(%#v) into *[]byte = %#v, %v; want non-nil empty", in, b, err)
		}
	}

	var rm json.RawMessage
	if err := (Raw{}).Unmarshal([]byte(`[1]`), &rm); err != nil || string(rm) != "[1]" {
		t.Errorf("into *json.RawMessage: %q, %v", rm, err)
	}
	type namedString string
	var ns namedString
	if err := (Raw{}).Unmarshal(data, &ns); err != nil || ns != "payload" {
		t.Errorf("into *namedString: %q, %v", ns, err)
	}
}

func TestRawUnmarshalUnsupported(t *testing.T) {
	var b []byte
	var s string
	var n int
	for _, into := range []any{nil, b, s, &n, (*[]byte)(nil), (*string)(nil), new([]int), new(any), new(*string)} {
		err := Raw{}.Unmarshal([]byte("x"), into)
		if !errors.Is(err, ErrUnsupportedType) {
			t.Errorf("Unmarshal into %#v: %v, want ErrUnsupportedType", into, err)
		}
	}
}

func TestRawRoundTrip(t *testing.T) {
	for _, in := range []string{"", "a", "\x00\xff binary \u2713"} {
		if got := roundTrip(t, Raw{}, in); got != in {
			t.Errorf("string %q: got %q", in, got)
		}
		if got := roundTrip(t, Raw{}, []byte(in)); string(got) != in || got == nil {
			t.Errorf("[]byte %q: got %#v", in, got)
		}
	}
}
