package serializer

import (
	"errors"
	"io"
	"sort"
	"strconv"
)

// This file holds the MessagePack pre-decoding check and the reader the
// decoder reads through.
//
// github.com/vmihailenco/msgpack/v5 sizes its allocations from the lengths
// an input declares, before it has read the elements: five bytes declaring
// an array32 of 4,294,967,295 elements make it allocate tens of gigabytes,
// and a run of fixarray(1) bytes makes it recurse until the goroutine stack
// overflows, which no recover can catch (vmihailenco/msgpack#401).
// checkMsgpack walks the encoding once, iteratively (it allocates only for
// nesting deeper than 32 and for the rare traps described below), and
// accepts only input in which
//
//   - every str, bin and ext payload fits in the bytes that remain;
//   - every array and map declares no more elements than there are bytes
//     left (each element takes at least one byte);
//   - containers nest at most maxDepth deep;
//   - exactly one value is present, with nothing after it.
//
// After that, every allocation the decoder sizes from a declared length is
// bounded by the size of the input. Nested containers are fully walked, so
// a declared length that is within bounds is also actually present.

// The MessagePack type codes this file needs, from the specification.
const (
	mpNil      = 0xc0
	mpNeverUse = 0xc1
	mpFalse    = 0xc2
	mpTrue     = 0xc3
	mpBin8     = 0xc4
	mpBin16    = 0xc5
	mpBin32    = 0xc6
	mpExt8     = 0xc7
	mpExt16    = 0xc8
	mpExt32    = 0xc9
	mpFloat32  = 0xca
	mpFloat64  = 0xcb
	mpUint8    = 0xcc
	mpUint16   = 0xcd
	mpUint32   = 0xce
	mpUint64   = 0xcf
	mpInt8     = 0xd0
	mpInt16    = 0xd1
	mpInt32    = 0xd2
	mpInt64    = 0xd3
	mpFixExt1  = 0xd4
	mpFixExt2  = 0xd5
	mpFixExt4  = 0xd6
	mpFixExt8  = 0xd7
	mpFixExt16 = 0xd8
	mpStr8     = 0xd9
	mpStr16    = 0xda
	mpStr32    = 0xdb
	mpArray16  = 0xdc
	mpArray32  = 0xdd
	mpMap16    = 0xde
	mpMap32    = 0xdf
)

// mpFixedSize holds, for each code that is followed by a payload of a size
// the code alone determines and that is not an extension, 1 + that size;
// 0 for every other code (containers, str/bin/ext with a length, fixext,
// and the never-used 0xc1), which checkMsgpack's switch handles.
var mpFixedSize = func() (t [256]uint8) {
	for c := 0x00; c <= 0x7f; c++ { // positive fixint
		t[c] = 1
	}
	for c := 0xe0; c <= 0xff; c++ { // negative fixint
		t[c] = 1
	}
	for c := 0xa0; c <= 0xbf; c++ { // fixstr
		t[c] = 1 + uint8(c&0x1f)
	}
	for _, c := range []byte{mpNil, mpFalse, mpTrue} {
		t[c] = 1
	}
	for _, c := range []byte{mpUint8, mpInt8} {
		t[c] = 1 + 1
	}
	for _, c := range []byte{mpUint16, mpInt16} {
		t[c] = 1 + 2
	}
	for _, c := range []byte{mpUint32, mpInt32, mpFloat32} {
		t[c] = 1 + 4
	}
	for _, c := range []byte{mpUint64, mpInt64, mpFloat64} {
		t[c] = 1 + 8
	}
	return t
}()

// isMsgpackMapLenCode reports whether msgpack v5 reads c as a map length:
// fixmap, map16, map32, or nil (a nil map).
func isMsgpackMapLenCode(c byte) bool {
	return (c >= 0x80 && c <= 0x8f) || c == mpMap16 || c == mpMap32 || c == mpNil
}

// checkMsgpack validates data as described at the top of this file.
//
// It appends to traps the offset of every extension payload that starts with
// a map or nil code, and returns the extended slice. The decoder has a path
// that skips an extension header and decodes what follows as a map
// (Decoder.DecodeMapLen, taken when a map destination meets an extension
// value). On that path it reads the payload, which this check treats as
// opaque, as MessagePack: a map header there could declare any length, and
// after a nil the decoder would go on reading inside the payload.
// guardedReader refuses to hand a trapped byte to the decoder with ReadByte,
// which is how that path reads it; every other path reads extension payloads
// with Read. An empty extension followed by nil or a map is rejected here,
// since the same byte also starts the next value. The path's only legitimate
// use is a form that msgpack v5 itself never writes.
func checkMsgpack(data []byte, maxDepth int, traps []int) ([]int, error) {
	// stack holds, for each open container, how many items were still
	// pending in its parent. It starts on the goroutine stack; only inputs
	// nested deeper than its capacity make it grow, at most to maxDepth.
	var stackBuf [32]uint64
	stack := stackBuf[:0]
	end := len(data)
	pos := 0
	pending := uint64(1) // items still to read at the current level

	for {
		// Most values are a code and a payload of a size the code gives
		// (ints, floats, nil, booleans, short strings): this loop skips
		// runs of them with one table lookup each and well-predicted
		// branches, rather than the switch below, whose branches the
		// irregular mix of codes mispredicts.
		for pending != 0 && pos < end {
			s := int(mpFixedSize[data[pos]])
			if s == 0 {
				break
			}
			if s > end-pos {
				return traps, truncatedMsgpack(pos)
			}
			pos += s
			pending--
		}
		if pending == 0 {
			if len(stack) == 0 {
				if pos != end {
					return traps, malformed("msgpack", strconv.Itoa(end-pos)+" trailing bytes after the value at offset "+strconv.Itoa(pos), nil)
				}
				return traps, nil
			}
			pending = stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			continue
		}
		pending--

		if pos >= end {
			return traps, truncatedMsgpack(pos)
		}
		start := pos
		c := data[pos]
		pos++

		var (
			size  uint64 // payload bytes to skip after the header
			items uint64 // items in a container (a map has 2 per entry)
			isCon bool   // c starts an array or a map
			isExt bool   // c starts an extension
			lenN  int    // bytes of big-endian length after c
			mult  uint64 // items per declared element: 1 array, 2 map
		)
		switch {
		case c <= 0x7f || c >= 0xe0: // positive and negative fixint
			continue
		case c <= 0x8f: // fixmap
			items, isCon, mult = uint64(c&0x0f)*2, true, 2
		case c <= 0x9f: // fixarray
			items, isCon, mult = uint64(c&0x0f), true, 1
		case c <= 0xbf: // fixstr
			size = uint64(c & 0x1f)
		default:
			switch c {
			case mpNil, mpFalse, mpTrue:
				continue
			case mpNeverUse:
				return traps, malformed("msgpack", "invalid type code 0xc1 at offset "+strconv.Itoa(start), nil)
			case mpBin8, mpStr8:
				lenN = 1
			case mpBin16, mpStr16:
				lenN = 2
			case mpBin32, mpStr32:
				lenN = 4
			case mpExt8:
				lenN, isExt = 1, true
			case mpExt16:
				lenN, isExt = 2, true
			case mpExt32:
				lenN, isExt = 4, true
			case mpUint8, mpInt8:
				size = 1
			case mpUint16, mpInt16:
				size = 2
			case mpUint32, mpInt32, mpFloat32:
				size = 4
			case mpUint64, mpInt64, mpFloat64:
				size = 8
			case mpFixExt1:
				size, isExt = 1, true
			case mpFixExt2:
				size, isExt = 2, true
			case mpFixExt4:
				size, isExt = 4, true
			case mpFixExt8:
				size, isExt = 8, true
			case mpFixExt16:
				size, isExt = 16, true
			case mpArray16:
				lenN, isCon, mult = 2, true, 1
			case mpArray32:
				lenN, isCon, mult = 4, true, 1
			case mpMap16:
				lenN, isCon, mult = 2, true, 2
			case mpMap32:
				lenN, isCon, mult = 4, true, 2
			}
		}

		if lenN > 0 {
			if end-pos < lenN {
				return traps, truncatedMsgpack(start)
			}
			var n uint64
			for _, b := range data[pos : pos+lenN] {
				n = n<<8 | uint64(b)
			}
			pos += lenN
			if isCon {
				items = n * mult
			} else {
				size = n
			}
		}

		if isExt {
			// The extension type byte comes first, then the payload.
			if pos >= end {
				return traps, truncatedMsgpack(start)
			}
			pos++
			if pos < end && isMsgpackMapLenCode(data[pos]) {
				if size == 0 {
					// The code belongs to the next value, which the
					// decoder must be free to read; but on the map path
					// it would be read as part of this extension, and
					// the two readings would fall out of step.
					return traps, malformed("msgpack", "empty extension at offset "+strconv.Itoa(start)+
						" followed by nil or a map", errExtMap)
				}
				traps = append(traps, pos)
			}
		}

		if isCon {
			if len(stack) >= maxDepth {
				return traps, limitOnDecode("msgpack", "nested deeper than MaxDepth "+strconv.Itoa(maxDepth)+" at offset "+strconv.Itoa(start))
			}
			if items > uint64(end-pos) {
				what, unit := "array", " elements"
				if mult == 2 {
					what, unit = "map", " entries"
				}
				return traps, malformed("msgpack", what+" at offset "+strconv.Itoa(start)+" declares "+
					strconv.FormatUint(items/mult, 10)+unit+" but only "+strconv.Itoa(end-pos)+" bytes remain", nil)
			}
			stack = append(stack, pending)
			pending = items
			continue
		}

		if size > uint64(end-pos) {
			if lenN == 0 && !isExt {
				return traps, truncatedMsgpack(start)
			}
			return traps, malformed("msgpack", "value at offset "+strconv.Itoa(start)+" declares "+
				strconv.FormatUint(size, 10)+" bytes but only "+strconv.Itoa(end-pos)+" remain", nil)
		}
		pos += int(size)
	}
}

func truncatedMsgpack(offset int) error {
	return malformed("msgpack", "truncated value at offset "+strconv.Itoa(offset), io.ErrUnexpectedEOF)
}

// errExtMap is what guardedReader reports when the decoder tries to read an
// extension payload as a map; see checkMsgpack.
var errExtMap = errors.New("map wrapped in an extension is not supported")

// errDiverged reports that the msgpack decoder did not end where
// checkMsgpack found the end of the value.
var errDiverged = errors.New("decoder and check disagree on the encoding")

// guardedReader is the io.Reader and io.ByteScanner the msgpack decoder reads
// from. It reads data like a bytes.Reader, except that a ReadByte at one of
// the trap offsets fails (see checkMsgpack).
type guardedReader struct {
	data  []byte
	pos   int
	traps []int // ascending offsets
}

func (r *guardedReader) reset(data []byte, traps []int) {
	r.data, r.pos, r.traps = data, 0, traps
}

func (r *guardedReader) Read(p []byte) (int, error) {
	if r.pos >= len(r.data) {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := copy(p, r.data[r.pos:])
	r.pos += n
	return n, nil
}

func (r *guardedReader) ReadByte() (byte, error) {
	if r.pos >= len(r.data) {
		return 0, io.EOF
	}
	if len(r.traps) > 0 {
		if i := sort.SearchInts(r.traps, r.pos); i < len(r.traps) && r.traps[i] == r.pos {
			return 0, malformed("msgpack", "extension payload at offset "+strconv.Itoa(r.pos)+" read as a map", errExtMap)
		}
	}
	c := r.data[r.pos]
	r.pos++
	return c, nil
}

func (r *guardedReader) UnreadByte() error {
	if r.pos <= 0 {
		return errors.New("serializer: msgpack: UnreadByte at beginning of input")
	}
	r.pos--
	return nil
}
