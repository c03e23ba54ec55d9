package bench

// Typed[V].Get over the memory backend, next to decoding the same bytes
// directly, for a struct of ten fields of mixed types:
//
//	go test -run '^$' -bench 'BenchmarkTypedGet' -benchmem -count 5 .
//
// Rows, for codec=msgpack and codec=json:
//
//	path=decode      the library's Unmarshal (vmihailenco/msgpack/v5,
//	                 encoding/json) of the stored bytes: the floor.
//	path=serializer  serializer.MsgPack{} / serializer.JSON{} Unmarshal of the
//	                 same bytes: the library plus cachekit's checks for
//	                 hostile input.
//	path=get+decode  the memory backend's Get, then the library's Unmarshal:
//	                 what a caller would write by hand.
//	path=typed       cachekit.Typed[V].Get over the memory backend.
//
// The target: path=typed within 15% of path=decode.

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
	"github.com/cachekit/cachekit/serializer"
)

// typedRecord has ten fields of mixed types. It has no tags, so that the
// libraries and cachekit's serializers agree on its field names.
type typedRecord struct {
	ID        int64
	Name      string
	Email     string
	Age       int32
	Score     float64
	Active    bool
	Tags      []string
	CreatedAt time.Time
	Balance   uint64
	Ratio     float32
}

var typedValue = typedRecord{
	ID:        123456789,
	Name:      "Ada Lovelace",
	Email:     "ada@example.com",
	Age:       36,
	Score:     98.6,
	Active:    true,
	Tags:      []string{"admin", "beta", "early-adopter"},
	CreatedAt: time.Date(2024, 5, 17, 12, 30, 45, 123456789, time.UTC),
	Balance:   1 << 40,
	Ratio:     0.75,
}

var typedCodecs = []struct {
	name      string
	ser       serializer.Serializer
	unmarshal func([]byte, any) error
}{
	{"msgpack", serializer.MsgPack{}, msgpack.Unmarshal},
	{"json", serializer.JSON{}, json.Unmarshal},
}

var sinkRecord typedRecord

func BenchmarkTypedGet(b *testing.B) {
	ctx := context.Background()
	for _, codec := range typedCodecs {
		c := memory.New(nil)
		b.Cleanup(func() { c.Close() })
		typed := cachekit.NewTyped[typedRecord](c, &cachekit.TypedOptions{Serializer: codec.ser})
		if err := typed.Set(ctx, "record", typedValue); err != nil {
			b.Fatal(err)
		}
		data, err := c.Get(ctx, "record")
		if err != nil {
			b.Fatal(err)
		}
		// Every path decodes the same bytes into the same value.
		var check typedRecord
		if err := codec.unmarshal(data, &check); err != nil || !equalRecords(check, typedValue) {
			b.Fatalf("%s: the library decodes the stored bytes as %+v, %v", codec.name, check, err)
		}

		b.Run("codec="+codec.name+"/path=decode", func(b *testing.B) {
			b.ReportAllocs()
			cpu := startCPU()
			for i := 0; i < b.N; i++ {
				var v typedRecord
				if err := codec.unmarshal(data, &v); err != nil {
					b.Fatal(err)
				}
				sinkRecord = v
			}
			cpu.report(b)
		})
		b.Run("codec="+codec.name+"/path=serializer", func(b *testing.B) {
			b.ReportAllocs()
			cpu := startCPU()
			for i := 0; i < b.N; i++ {
				var v typedRecord
				if err := codec.ser.Unmarshal(data, &v); err != nil {
					b.Fatal(err)
				}
				sinkRecord = v
			}
			cpu.report(b)
		})
		b.Run("codec="+codec.name+"/path=get+decode", func(b *testing.B) {
			b.ReportAllocs()
			cpu := startCPU()
			for i := 0; i < b.N; i++ {
				data, err := c.Get(ctx, "record")
				if err != nil {
					b.Fatal(err)
				}
				var v typedRecord
				if err := codec.unmarshal(data, &v); err != nil {
					b.Fatal(err)
				}
				sinkRecord = v
			}
			cpu.report(b)
		})
		b.Run("codec="+codec.name+"/path=typed", func(b *testing.B) {
			b.ReportAllocs()
			cpu := startCPU()
			for i := 0; i < b.N; i++ {
				v, err := typed.Get(ctx, "record")
				if err != nil {
					b.Fatal(err)
				}
				sinkRecord = v
			}
			cpu.report(b)
		})
	}
}

// equalRecords compares records, times by instant (msgpack decodes them in
// time.Local).
func equalRecords(a, b typedRecord) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) {
		return false
	}
	a.CreatedAt, b.CreatedAt = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}
