package serializer

import (
	"fmt"
	"reflect"
)

// Raw is a Serializer that stores bytes and strings as they are, with no
// encoding. The zero value is ready to use and safe for concurrent use.
//
// Use it for values that are already bytes (a rendered page, a protobuf,
// an image) or strings, with Typed[[]byte] or Typed[string]. Types whose
// underlying type is []byte or string, such as json.RawMessage, work too.
//
// Marshal accepts []byte, *[]byte, string and *string. Unmarshal accepts
// *[]byte and *string. Anything else fails with ErrUnsupportedType. Neither
// method aliases its argument: Marshal returns a copy, and Unmarshal stores a
// copy of data.
//
// Raw has no nil: a nil []byte is stored as zero bytes, and zero bytes decode
// as an empty, non-nil []byte.
type Raw struct{}

var byteType = reflect.TypeFor[byte]()

// Marshal returns a copy of the bytes of v, which must be a []byte, a string,
// or a non-nil pointer to one.
func (Raw) Marshal(v any) ([]byte, error) {
	switch v := v.(type) {
	case []byte:
		return cloneBytes(v), nil
	case string:
		return []byte(v), nil
	case *[]byte:
		if v != nil {
			return cloneBytes(*v), nil
		}
	case *string:
		if v != nil {
			return []byte(*v), nil
		}
	default:
		// Named types such as json.RawMessage, and pointers to them.
		rv := reflect.ValueOf(v)
		if rv.Kind() == reflect.Pointer && !rv.IsNil() {
			rv = rv.Elem()
		}
		switch {
		case rv.Kind() == reflect.Slice && rv.Type().Elem() == byteType:
			return cloneBytes(rv.Bytes()), nil
		case rv.Kind() == reflect.String:
			return []byte(rv.String()), nil
		}
	}
	return nil, unsupportedRaw("marshal", v)
}

// Unmarshal stores a copy of data in v, which must be a non-nil *[]byte or
// *string. Zero bytes decode as an empty, non-nil []byte, or as "".
func (Raw) Unmarshal(data []byte, v any) error {
	switch v := v.(type) {
	case *[]byte:
		if v != nil {
			*v = cloneBytes(data)
			return nil
		}
	case *string:
		if v != nil {
			*v = string(data)
			return nil
		}
	default:
		rv := reflect.ValueOf(v)
		if rv.Kind() == reflect.Pointer && !rv.IsNil() {
			e := rv.Elem()
			switch {
			case e.Kind() == reflect.Slice && e.Type().Elem() == byteType:
				b := cloneBytes(data)
				e.Set(reflect.ValueOf(b).Convert(e.Type()))
				return nil
			case e.Kind() == reflect.String:
				e.SetString(string(data))
				return nil
			}
		}
	}
	return unsupportedRaw("unmarshal into", v)
}

// cloneBytes returns a copy of b that is never nil.
func cloneBytes(b []byte) []byte {
	out := make([]byte, len(b))
	copy(out, b)
	return out
}

func unsupportedRaw(op string, v any) error {
	var want string
	if op == "marshal" {
		want = "[]byte, string, or a non-nil pointer to one"
	} else {
		want = "a non-nil *[]byte or *string"
	}
	if v != nil {
		if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && rv.IsNil() {
			return fmt.Errorf("%w: raw: cannot %s nil %T (want %s)", ErrUnsupportedType, op, v, want)
		}
	}
	return fmt.Errorf("%w: raw: cannot %s %T (want %s)", ErrUnsupportedType, op, v, want)
}
