package cachekit_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
	"github.com/cachekit/cachekit/serializer"
)

// Typed.Get over a SharedGetter decodes the stored bytes in place, and
// serializer.MsgPack checks the bytes of each stored value once rather than
// on every read. These tests hold that path to what Unmarshal promises:
// hostile bytes are an ErrDecode error on every read, a panic while decoding
// is an error, and a value written over a checked one is checked anew.

type msgpackRecord struct {
	Name string
	Tags []string
	N    int
}

func TestTypedMsgPackSharedHostile(t *testing.T) {
	ctx := context.Background()
	m := memory.New(nil)
	defer m.Close()
	hostile := map[string][]byte{
		"array32 of 4G elements": {0xdd, 0xff, 0xff, 0xff, 0xff},
		"str32 of 4G bytes":      {0xdb, 0xff, 0xff, 0xff, 0xff},
		"nested 100000 deep":     bytes.Repeat([]byte{0x91}, 100000),
		"truncated":              {0x83, 0xa4, 'N', 'a', 'm', 'e'},
		"never-used code":        {0xc1},
		"trailing bytes":         {0x80, 0x80},
	}
	for _, c := range []cachekit.Cache{m, cachekit.WithHooks(m, cachekit.HookFunc(func(ctx context.Context, op *cachekit.Op) error { return op.Next(ctx) }))} {
		if _, ok := c.(cachekit.SharedGetter); !ok {
			t.Fatalf("%T is not a SharedGetter", c)
		}
		typed := cachekit.NewTyped[msgpackRecord](c, &cachekit.TypedOptions{Serializer: serializer.MsgPack{}})
		for name, data := range hostile {
			if err := m.Set(ctx, name, data, 0); err != nil {
				t.Fatal(err)
			}
			for range 3 { // the check is not skipped on a later read
				_, err := typed.Get(ctx, name)
				if !errors.Is(err, cachekit.ErrDecode) || !errors.Is(err, serializer.ErrMalformed) {
					t.Fatalf("%s: Get = %v, want ErrDecode and ErrMalformed", name, err)
				}
			}
		}
	}
}

func TestTypedMsgPackSharedOverwritten(t *testing.T) {
	ctx := context.Background()
	m := memory.New(nil)
	defer m.Close()
	typed := cachekit.NewTyped[msgpackRecord](m, &cachekit.TypedOptions{Serializer: serializer.MsgPack{}})
	want := msgpackRecord{Name: "a", Tags: []string{"x", "y"}, N: 7}
	if err := typed.Set(ctx, "k", want); err != nil {
		t.Fatal(err)
	}
	good, err := m.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if v, err := typed.Get(ctx, "k"); err != nil || v.Name != "a" || len(v.Tags) != 2 || v.N != 7 {
			t.Fatalf("Get = %+v, %v", v, err)
		}
	}
	// Bytes of the same length, nested too deep: a new value, so a new
	// check, whatever the old one's was.
	bad := append(bytes.Repeat([]byte{0x91}, len(good)-1), 0x01)
	if len(bad) > serializer.DefaultMaxDepth {
		t.Fatalf("test value of %d bytes is too long to nest too deep", len(good))
	}
	deep := serializer.MsgPack{MaxDepth: 4}
	typedDeep := cachekit.NewTyped[any](m, &cachekit.TypedOptions{Serializer: deep})
	if err := m.Set(ctx, "k", bad, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := typedDeep.Get(ctx, "k"); !errors.Is(err, cachekit.ErrDecode) || !errors.Is(err, serializer.ErrLimitExceeded) {
		t.Fatalf("Get of a value nested %d deep with MaxDepth 4 = %v, want ErrDecode and ErrLimitExceeded", len(bad)-1, err)
	}
	if _, err := typed.Get(ctx, "k"); err == nil {
		t.Fatal("Get of an array into a struct succeeded")
	}
}

// panicsOnDecode panics in its DecodeMsgpack method.
type panicsOnDecode struct{}

func (*panicsOnDecode) DecodeMsgpack(*msgpack.Decoder) error { panic("boom") }

func TestTypedMsgPackSharedPanic(t *testing.T) {
	ctx := context.Background()
	m := memory.New(nil)
	defer m.Close()
	typed := cachekit.NewTyped[panicsOnDecode](m, &cachekit.TypedOptions{Serializer: serializer.MsgPack{}})
	if err := m.Set(ctx, "k", []byte{0x01}, 0); err != nil {
		t.Fatal(err)
	}
	for range 2 { // checked, then remembered as checked
		_, err := typed.Get(ctx, "k")
		if !errors.Is(err, cachekit.ErrDecode) || !strings.Contains(err.Error(), "boom") {
			t.Fatalf("Get = %v, want ErrDecode with the panic", err)
		}
	}
}
