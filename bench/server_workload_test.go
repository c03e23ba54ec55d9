package bench

import "github.com/cachekit/cachekit/serializer"

// serverValue is the value type of the Redis and Memcached benchmarks;
// Payload sets its encoded size.
type serverValue struct {
	ID      int64
	Name    string
	Tags    []string
	Payload []byte
}

// newServerValue returns a serverValue whose msgpack encoding is about size
// bytes.
func newServerValue(size int) serverValue {
	v := serverValue{ID: 42, Name: "benchmark value", Tags: []string{"a", "b"}}
	base, err := serializer.MsgPack{}.Marshal(v)
	if err != nil {
		panic(err)
	}
	v.Payload = make([]byte, max(size-len(base)-3, 0))
	return v
}

// serverKeys is how many distinct keys the server benchmarks cycle through.
const serverKeys = 1000

var serverSizes = []struct {
	name string
	size int
}{{"100B", 100}, {"10KiB", 10 << 10}}

var serverConcurrency = []struct {
	name       string
	goroutines int
}{{"seq", 1}, {"64", 64}}
