package serializer

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// benchRecord is a typical cached record: ten fields of the common kinds.
// Its msgpack tags repeat the json tags so that plain msgpack.Unmarshal, which
// ignores json tags, decodes the same bytes into the same fields.
type benchRecord struct {
	ID        int64     `json:"id" msgpack:"id"`
	Name      string    `json:"name" msgpack:"name"`
	Email     string    `json:"email" msgpack:"email"`
	Age       int       `json:"age" msgpack:"age"`
	Score     float64   `json:"score" msgpack:"score"`
	Active    bool      `json:"active" msgpack:"active"`
	Tags      []string  `json:"tags" msgpack:"tags"`
	Balance   int64     `json:"balance" msgpack:"balance"`
	Country   string    `json:"country" msgpack:"country"`
	CreatedAt time.Time `json:"created_at" msgpack:"created_at"`
}

var benchValue = benchRecord{
	ID: 1234567, Name: "Ada Lovelace", Email: "ada@example.com", Age: 36,
	Score: 98.6, Active: true, Tags: []string{"admin", "beta"}, Balance: -42000,
	Country: "GB", CreatedAt: time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC),
}

func BenchmarkMsgPackUnmarshal(b *testing.B) {
	data, err := MsgPack{}.Marshal(benchValue)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("serializer", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var v benchRecord
			if err := (MsgPack{}).Unmarshal(data, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("msgpack.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var v benchRecord
			if err := msgpack.Unmarshal(data, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("check-only", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := checkMsgpack(data, DefaultMaxDepth, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkMsgPackMarshal(b *testing.B) {
	b.Run("serializer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := (MsgPack{}).Marshal(benchValue); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("msgpack.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := msgpack.Marshal(benchValue); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkJSONUnmarshal(b *testing.B) {
	data, err := JSON{}.Marshal(benchValue)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("serializer", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var v benchRecord
			if err := (JSON{}).Unmarshal(data, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var v benchRecord
			if err := json.Unmarshal(data, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkJSONUnmarshalLarge decodes a document longer than
// DefaultMaxDepth bytes, so that the depth scan runs.
func BenchmarkJSONUnmarshalLarge(b *testing.B) {
	records := make([]benchRecord, 20)
	for i := range records {
		records[i] = benchValue
	}
	data, err := JSON{}.Marshal(records)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("serializer", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var v []benchRecord
			if err := (JSON{}).Unmarshal(data, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var v []benchRecord
			if err := json.Unmarshal(data, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("depth-scan-only", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if jsonTooDeep(data, DefaultMaxDepth) >= 0 {
				b.Fatal("too deep")
			}
		}
	})
}

func BenchmarkJSONMarshal(b *testing.B) {
	b.Run("serializer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := (JSON{}).Marshal(benchValue); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(benchValue); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkRaw(b *testing.B) {
	data := make([]byte, 1024)
	b.Run("Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := (Raw{}).Marshal(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var v []byte
			if err := (Raw{}).Unmarshal(data, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
}
