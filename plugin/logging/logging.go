// Package logging is a cachekit hook that logs every cache operation, and
// the events of the layers above the cache, with log/slog.
//
//	c := cachekit.WithHooks(backend, logging.New(slog.Default(), nil))
//
// Each operation becomes one record with the message "cachekit" and these
// attributes:
//
//	op        the Cache method: Get, GetMany, Set, SetMany, Add, Delete, Exists, Increment, Expire, Clear,
//	          or CompareAndDelete and CompareAndSwap (the optional interfaces, when the hooked cache has them)
//	key       the key, for single-key operations (and a Delete of one key)
//	key_len   the key's length in bytes, when the key was truncated
//	keys      the number of keys, for GetMany, SetMany and Delete
//	outcome   ok, hit, miss, exists or error (see cachekit.Outcome)
//	duration  how long the operation took, hooks inside this one included
//	          (only when Level is enabled: see Levels)
//	ttl       the TTL given, for Set, SetMany, Add, Expire and CompareAndSwap
//	size      the bytes of value data read or written, when not 0
//	hits      GetMany: keys found
//	misses    GetMany: keys not found
//	deleted   CompareAndDelete: whether it deleted the key
//	swapped   CompareAndSwap: whether it stored the new value
//	error     the error, for outcome error
//
// Events (loads, load errors, stampede joins, stale values served, early
// refreshes, decode failures) become records with the message
// "cachekit event" and the attributes event, key, duration and error.
//
// # Levels
//
// Records are logged at [Options.Level] (Debug by default), and those of
// failed operations, load errors and decode failures at
// [Options.ErrorLevel] (Error by default). A miss, and Add finding its key
// present, are answers, not failures.
//
// The hook reads the clock only when the logger enables Level, so that
// the usual production setup, with Debug records off and Error records on,
// costs two level checks per operation and nothing else: records of failed
// operations then have no duration attribute. When the logger enables
// neither level, the hook only checks that and runs the operation.
//
// # What is never logged
//
// Values are never logged, only their size. Errors that may quote a value
// are logged as the operation, the key and the cachekit sentinel only:
// those matching ErrNotInteger (a backend may show the stored value),
// ErrDecode (a serializer may quote what it could not decode; encoding/json
// does), ErrEncode and ErrTooLarge. A decode error then reads, for example,
// `cachekit: Get "user:1": cannot decode value (*json.UnmarshalTypeError)`. Keys are logged,
// because they are what makes a log line useful; they are cut to
// [Options.MaxKeyLen] bytes, and a key that is not printable text (binary
// keys, control characters, invalid UTF-8), or that starts with a double
// quote, is logged Go-quoted, as strconv.Quote writes it. Hash or omit keys
// that are secrets with a hook of your own, inside this one.
package logging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/serializer"
)

// DefaultMaxKeyLen is the longest key prefix logged when
// [Options.MaxKeyLen] is not set.
const DefaultMaxKeyLen = 64

// Options configures a [Hook]. A nil *Options means the defaults of every
// field.
type Options struct {
	// Level is the level of the records of operations that did not fail,
	// and of events other than load errors and decode failures. A
	// *slog.LevelVar changes it while the program runs. Default (nil):
	// slog.LevelDebug.
	Level slog.Leveler

	// ErrorLevel is the level of the records of failed operations, load
	// errors and decode failures. Default (nil): slog.LevelError.
	ErrorLevel slog.Leveler

	// MaxKeyLen is the longest part of a key that is logged, in bytes
	// (cut back to a whole UTF-8 character). Default (0 or negative):
	// DefaultMaxKeyLen, 64.
	MaxKeyLen int
}

// Hook is a [cachekit.Hook] and [cachekit.EventHook] that logs operations
// and events. Make one with [New]; it is safe for concurrent use.
type Hook struct {
	logger   *slog.Logger
	level    slog.Leveler
	errLevel slog.Leveler
	maxKey   int
}

var (
	_ cachekit.Hook      = (*Hook)(nil)
	_ cachekit.EventHook = (*Hook)(nil)
)

// New returns a Hook that logs to logger (slog.Default() when nil),
// configured by opts, which may be nil.
func New(logger *slog.Logger, opts *Options) *Hook {
	var o Options
	if opts != nil {
		o = *opts
	}
	if logger == nil {
		logger = slog.Default()
	}
	h := &Hook{logger: logger, level: o.Level, errLevel: o.ErrorLevel, maxKey: o.MaxKeyLen}
	if h.level == nil {
		h.level = slog.LevelDebug
	}
	if h.errLevel == nil {
		h.errLevel = slog.LevelError
	}
	if h.maxKey <= 0 {
		h.maxKey = DefaultMaxKeyLen
	}
	return h
}

// ProcessOp runs op and logs it, and returns its error unchanged.
func (h *Hook) ProcessOp(ctx context.Context, op *cachekit.Op) error {
	level, errLevel := h.level.Level(), h.errLevel.Level()
	on, errOn := h.logger.Enabled(ctx, level), h.logger.Enabled(ctx, errLevel)
	if !on && !errOn {
		return op.Next(ctx)
	}
	// Time the operation only if its record is logged whatever the outcome:
	// with only ErrorLevel enabled (the usual production setup), operations
	// that succeed cost no clock reads, and failures are logged without a
	// duration.
	var start time.Time
	if on {
		start = time.Now()
	}
	err := op.Next(ctx)
	var d time.Duration
	if on {
		d = time.Since(start)
	}

	outcome := op.Outcome()
	if outcome == cachekit.OutcomeError {
		if !errOn {
			return err
		}
		level = errLevel
	} else if !on {
		return err
	}

	now := start.Add(d)
	if !on {
		now = time.Now()
	}
	r := slog.NewRecord(now, level, "cachekit", 0)
	r.AddAttrs(slog.String("op", op.Name()))
	switch op.Kind() {
	case cachekit.OpGetMany, cachekit.OpSetMany:
		r.AddAttrs(slog.Int("keys", op.NumKeys()))
	case cachekit.OpDelete:
		if len(op.Keys) == 1 {
			h.addKey(&r, op.Keys[0])
		} else {
			r.AddAttrs(slog.Int("keys", len(op.Keys)))
		}
	case cachekit.OpClear:
	default:
		h.addKey(&r, op.Key)
	}
	r.AddAttrs(slog.String("outcome", outcome.String()))
	if on {
		r.AddAttrs(slog.Duration("duration", d))
	}
	switch op.Kind() {
	case cachekit.OpSet, cachekit.OpSetMany, cachekit.OpAdd, cachekit.OpExpire, cachekit.OpCompareAndSwap:
		r.AddAttrs(slog.Duration("ttl", op.TTL))
	}
	if n := op.Size(); n > 0 {
		r.AddAttrs(slog.Int("size", n))
	}
	if op.Kind() == cachekit.OpGetMany && err == nil {
		hits := op.Hits()
		r.AddAttrs(slog.Int("hits", hits), slog.Int("misses", len(op.Keys)-hits))
	}
	if op.Kind() == cachekit.OpCompareAndDelete && err == nil {
		r.AddAttrs(slog.Bool("deleted", op.OK))
	}
	if op.Kind() == cachekit.OpCompareAndSwap && err == nil {
		r.AddAttrs(slog.Bool("swapped", op.OK))
	}
	if outcome == cachekit.OutcomeError {
		r.AddAttrs(slog.String("error", errorText(err)))
	}
	_ = h.logger.Handler().Handle(ctx, r)
	return err
}

// OnEvent logs ev.
func (h *Hook) OnEvent(ctx context.Context, ev cachekit.Event) {
	level := h.level
	if ev.Kind == cachekit.EventLoadError || ev.Kind == cachekit.EventDecodeError {
		level = h.errLevel
	}
	l := level.Level()
	if !h.logger.Enabled(ctx, l) {
		return
	}
	r := slog.NewRecord(time.Now(), l, "cachekit event", 0)
	r.AddAttrs(slog.String("event", string(ev.Kind)))
	if ev.Key != "" {
		h.addKey(&r, ev.Key)
	}
	if ev.Duration != 0 {
		r.AddAttrs(slog.Duration("duration", ev.Duration))
	}
	if ev.Err != nil {
		r.AddAttrs(slog.String("error", errorText(ev.Err)))
	}
	_ = h.logger.Handler().Handle(ctx, r)
}

func (h *Hook) addKey(r *slog.Record, key string) {
	s, cut := formatKey(key, h.maxKey)
	r.AddAttrs(slog.String("key", s))
	if cut {
		r.AddAttrs(slog.Int("key_len", len(key)))
	}
}

// formatKey returns the part of key that is logged, and whether it was cut.
func formatKey(key string, max int) (string, bool) {
	s, cut := key, false
	if len(s) > max {
		n := max
		// Cut back to the start of a character, unless the key is not
		// UTF-8 there anyway.
		for i := n; i > 0 && i > n-utf8.UTFMax; i-- {
			if utf8.RuneStart(s[i]) {
				n = i
				break
			}
		}
		s, cut = s[:n], true
	}
	if needsQuoting(s) {
		s = strconv.Quote(s)
	}
	if cut {
		s += "..."
	}
	return s, cut
}

// needsQuoting reports whether s is not plain printable text: invalid
// UTF-8, a character that is not printable, or a leading double quote
// (which would make it look quoted).
func needsQuoting(s string) bool {
	if s == "" || s[0] == '"' {
		return s != ""
	}
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b < ' ' || b == 0x7f {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

// valueErrors are the sentinels whose errors may quote a stored or given
// value: a backend may show the value that is not an integer, a serializer
// the part of the value it could not decode.
var valueErrors = []error{cachekit.ErrNotInteger, cachekit.ErrDecode, cachekit.ErrEncode, cachekit.ErrTooLarge}

// errorText returns err's message, unless err matches one of valueErrors:
// then it is the operation, the key and the sentinel's message, without
// the detail that may quote the value; for decode errors, also whether the
// input was malformed and the type of the innermost error, such as
// *json.UnmarshalTypeError.
func errorText(err error) string {
	var sentinel error
	for _, s := range valueErrors {
		if errors.Is(err, s) {
			sentinel = s
			break
		}
	}
	if sentinel == nil {
		return err.Error()
	}
	msg := sentinel.Error()
	var ce *cachekit.Error
	if errors.As(err, &ce) {
		msg = (&cachekit.Error{Op: ce.Op, Key: ce.Key, Err: sentinel}).Error()
	}
	if sentinel == cachekit.ErrDecode {
		if errors.Is(err, serializer.ErrMalformed) {
			msg += ": malformed input"
		}
		if cause := innermost(err); cause != cachekit.ErrDecode {
			msg += fmt.Sprintf(" (%T)", cause)
		}
	}
	return msg
}

// innermost follows err's chain down to the error that wraps nothing,
// taking, where an error wraps several, the first that is not
// cachekit.ErrDecode.
func innermost(err error) error {
	for {
		switch e := err.(type) {
		case interface{ Unwrap() error }:
			next := e.Unwrap()
			if next == nil {
				return err
			}
			err = next
		case interface{ Unwrap() []error }:
			var next error
			for _, x := range e.Unwrap() {
				if x != nil && x != cachekit.ErrDecode {
					next = x
					break
				}
			}
			if next == nil {
				return cachekit.ErrDecode
			}
			err = next
		default:
			return err
		}
	}
}
