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

// Typed calls serializer.MsgPack without a deferred recover of its own,
// since MsgPack's Unmarshal returns panics as errors (it promises never to
// panic). These tests hold Typed.Get with MsgPack to its
// promises over the memory backend, whose stored bytes it decodes in place:
// hostile bytes are an ErrDecode error on every read, and a panic while
// decoding is an error, not a panic.

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
			for range 3 {
				_, err := typed.Get(ctx, name)
				if !errors.Is(err, cachekit.ErrDecode) || !errors.Is(err, serializer.ErrMalformed) {
					t.Fatalf("%s: Get = %v, want ErrDecode and ErrMalformed", name, err)
				}
			}
		}
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
	for range 2 {
		_, err := typed.Get(ctx, "k")
		if !errors.Is(err, cachekit.ErrDecode) || !strings.Contains(err.Error(), "boom") {
			t.Fatalf("Get = %v, want ErrDecode with the panic", err)
		}
	}
}
