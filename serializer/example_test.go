package serializer_test

import (
	"errors"
	"fmt"

	"github.com/cachekit/cachekit/serializer"
)

type User struct {
	ID    int64    `json:"id"`
	Name  string   `json:"name"`
	Roles []string `json:"roles,omitempty"`
}

func ExampleJSON() {
	var s serializer.Serializer = serializer.JSON{}

	b, err := s.Marshal(User{ID: 1, Name: "Ada", Roles: []string{"admin"}})
	if err != nil {
		panic(err)
	}
	fmt.Println(string(b))

	var u User
	if err := s.Unmarshal(b, &u); err != nil {
		panic(err)
	}
	fmt.Printf("%+v\n", u)
	// Output:
	// {"id":1,"name":"Ada","roles":["admin"]}
	// {ID:1 Name:Ada Roles:[admin]}
}

func ExampleMsgPack() {
	var s serializer.Serializer = serializer.MsgPack{}

	// Struct fields without a msgpack tag use their json tag.
	b, err := s.Marshal(User{ID: 1, Name: "Ada"})
	if err != nil {
		panic(err)
	}
	fmt.Printf("%d bytes\n", len(b))

	var u User
	if err := s.Unmarshal(b, &u); err != nil {
		panic(err)
	}
	fmt.Printf("%+v\n", u)

	var m map[string]any
	if err := s.Unmarshal(b, &m); err != nil {
		panic(err)
	}
	fmt.Println(m["name"])
	// Output:
	// 14 bytes
	// {ID:1 Name:Ada Roles:[]}
	// Ada
}

func ExampleMsgPack_hostileInput() {
	// Five bytes that declare an array of 4,294,967,295 elements. Plain
	// msgpack v5 would try to allocate tens of gigabytes for them.
	hostile := []byte{0xdd, 0xff, 0xff, 0xff, 0xff}

	var v []int
	err := serializer.MsgPack{}.Unmarshal(hostile, &v)
	fmt.Println(errors.Is(err, serializer.ErrMalformed))
	fmt.Println(err)

	// Nesting beyond MaxDepth is refused too.
	deep := []byte{0x91, 0x91, 0x91, 0x90} // [[[[]]]]
	err = serializer.MsgPack{MaxDepth: 3}.Unmarshal(deep, new(any))
	fmt.Println(errors.Is(err, serializer.ErrMalformed), errors.Is(err, serializer.ErrLimitExceeded))
	// Output:
	// true
	// serializer: msgpack: malformed input: array at offset 0 declares 4294967295 elements but only 0 bytes remain
	// true true
}

// Entry takes 4 KiB of memory but encodes to a few bytes: its buffer is
// not encoded.
type Entry struct {
	ID  int
	buf [4096]byte
}

func ExampleMsgPack_allocLimits() {
	entries := make([]Entry, 1000) // 4 MB in memory, 5 KB encoded

	// Decoding would allocate far more than 64 times the encoding plus
	// 1 MiB, which Unmarshal refuses; so Marshal refuses too.
	_, err := serializer.MsgPack{}.Marshal(entries)
	fmt.Println(errors.Is(err, serializer.ErrLimitExceeded))

	// Raising the budget (for the writers and the readers) stores them.
	s := serializer.MsgPack{AllocSlack: 16 << 20}
	b, err := s.Marshal(entries)
	if err != nil {
		panic(err)
	}
	var back []Entry
	fmt.Println(s.Unmarshal(b, &back), len(back))
	// Output:
	// true
	// <nil> 1000
}

func ExampleRaw() {
	s := serializer.Raw{}

	b, err := s.Marshal("<h1>rendered page</h1>")
	if err != nil {
		panic(err)
	}

	var page string
	if err := s.Unmarshal(b, &page); err != nil {
		panic(err)
	}
	fmt.Println(page)

	var raw []byte
	if err := s.Unmarshal(b, &raw); err != nil {
		panic(err)
	}
	fmt.Println(len(raw))

	_, err = s.Marshal(42)
	fmt.Println(errors.Is(err, serializer.ErrUnsupportedType))
	// Output:
	// <h1>rendered page</h1>
	// 22
	// true
}
