package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
	"github.com/cachekit/cachekit/cachetest"
	"github.com/cachekit/cachekit/plugin/logging"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var bg = context.Background()

// TestConformance runs the suite through the hook with every record
// enabled, so that formatting runs on every operation the suite makes.
func TestConformance(t *testing.T) {
	const maxValue = 1 << 20
	root := memory.New(&memory.Options{MaxBytes: 64 << 20, MaxValueSize: maxValue})
	t.Cleanup(func() { root.Close() })
	logger := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))
	hook := logging.New(logger, nil)
	cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
		return cachekit.WithHooks(root.WithNamespace(ns), hook)
	}, &cachetest.Options{MaxValueSize: maxValue})
}

// jsonLog is a logger whose records can be read back as maps.
type jsonLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *jsonLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *jsonLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *jsonLog) records(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("bad log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	l.mu.Lock()
	l.buf.Reset()
	l.mu.Unlock()
	return out
}

func newJSONLogger(level slog.Level) (*slog.Logger, *jsonLog) {
	l := &jsonLog{}
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: level})), l
}

func TestRecords(t *testing.T) {
	logger, out := newJSONLogger(slog.LevelDebug)
	m := memory.New(nil)
	defer m.Close()
	c := cachekit.WithHooks(m, logging.New(logger, nil))

	_ = c.Set(bg, "user:1", []byte("ada"), time.Minute)
	_, _ = c.Get(bg, "user:1")
	_, _ = c.Get(bg, "user:2")
	_, _ = c.GetMany(bg, []string{"user:1", "user:3"})
	_ = c.Add(bg, "user:1", []byte("bob"), 0)
	_, _ = c.Increment(bg, "user:1", 1)
	_, _ = c.Delete(bg, "user:1")
	_, _ = c.Delete(bg, "a", "b")
	_ = c.Clear(bg)

	recs := out.records(t)
	type want struct {
		level, op, key, outcome string
		extra                   map[string]any
	}
	wants := []want{
		{"DEBUG", "Set", "user:1", "ok", map[string]any{"ttl": float64(time.Minute), "size": float64(3)}},
		{"DEBUG", "Get", "user:1", "hit", map[string]any{"size": float64(3)}},
		{"DEBUG", "Get", "user:2", "miss", nil},
		{"DEBUG", "GetMany", "", "ok", map[string]any{"keys": float64(2), "hits": float64(1), "misses": float64(1), "size": float64(3)}},
		{"DEBUG", "Add", "user:1", "exists", map[string]any{"size": float64(3), "ttl": float64(0)}},
		{"ERROR", "Increment", "user:1", "error", map[string]any{"error": `cachekit: Increment "user:1": value is not an integer`}},
		{"DEBUG", "Delete", "user:1", "ok", nil},
		{"DEBUG", "Delete", "", "ok", map[string]any{"keys": float64(2)}},
		{"DEBUG", "Clear", "", "ok", nil},
	}
	if len(recs) != len(wants) {
		t.Fatalf("%d records, want %d:\n%v", len(recs), len(wants), recs)
	}
	for i, w := range wants {
		r := recs[i]
		if r["msg"] != "cachekit" || r["level"] != w.level || r["op"] != w.op || r["outcome"] != w.outcome {
			t.Errorf("record %d = %v, want level %s op %s outcome %s", i, r, w.level, w.op, w.outcome)
		}
		if key, _ := r["key"].(string); key != w.key {
			t.Errorf("record %d: key %q, want %q", i, key, w.key)
		}
		if _, ok := r["duration"].(float64); !ok {
			t.Errorf("record %d has no duration: %v", i, r)
		}
		for k, v := range w.extra {
			if r[k] != v {
				t.Errorf("record %d: %s = %v, want %v", i, k, r[k], v)
			}
		}
		if w.outcome != "error" && r["error"] != nil {
			t.Errorf("record %d has an error: %v", i, r)
		}
	}
	// The Add that found its key did not log "size" as the stored value's.
	if recs[4]["size"] != float64(3) {
		t.Errorf("Add size %v", recs[4]["size"])
	}
}

// TestValuesNeverLogged writes a value through every operation, including
// one that fails to decode in a way whose error quotes it, and checks that
// it never reaches the log.
func TestValuesNeverLogged(t *testing.T) {
	const secret = "7318529046"
	var buf jsonLog
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m := memory.New(nil)
	defer m.Close()
	c := cachekit.WithHooks(m, logging.New(logger, nil))
	val := []byte(secret)

	_ = c.Set(bg, "a", val, 0)
	_, _ = c.Get(bg, "a")
	_ = c.SetMany(bg, map[string][]byte{"b": val, "c": val}, time.Hour)
	_, _ = c.GetMany(bg, []string{"a", "b", "c"})
	_ = c.Add(bg, "a", val, 0)
	_ = c.Add(bg, "d", val, 0)
	_, _ = c.Increment(bg, "a", 1)
	_ = c.Set(bg, "big", val, -1)

	// A JSON number where a string is expected: encoding/json's error says
	// "cannot unmarshal number 7318529046 into ...".
	typed := cachekit.NewTyped[string](c, nil)
	_, err := typed.Get(bg, "a")
	if !errors.Is(err, cachekit.ErrDecode) {
		t.Fatalf("Typed.Get of a number into a string: %v, want ErrDecode", err)
	}
	_, _ = typed.GetOrLoad(bg, "b", func(context.Context) (string, error) { return "", errors.New("loader failed") })

	// A backend whose error quotes the stored value (as one might for a
	// value that is not an integer).
	quoting := cachekit.HookFunc(func(ctx context.Context, op *cachekit.Op) error {
		if op.Kind() == cachekit.OpIncrement && op.Key == "q" {
			return &cachekit.Error{Op: "Increment", Key: "q", Err: fmt.Errorf("%w: stored value %q", cachekit.ErrNotInteger, secret)}
		}
		return op.Next(ctx)
	})
	c2 := cachekit.WithHooks(m, logging.New(logger, nil), quoting)
	if _, err := c2.Increment(bg, "q", 1); !strings.Contains(err.Error(), secret) {
		t.Fatalf("the test hook's error %v does not quote the value", err)
	}

	out := buf.String()
	if !strings.Contains(out, `error="cachekit: Increment \"q\": value is not an integer"`) {
		t.Errorf("the log has no sanitized Increment error:\n%s", out)
	}
	if strings.Contains(out, secret[:6]) {
		t.Errorf("the log contains the value:\n%s", out)
	}
	for _, want := range []string{
		"op=Get", "op=SetMany", "op=GetMany", "outcome=exists", "event=decode_error",
		`error="cachekit: cannot decode value (*json.UnmarshalTypeError)"`,
		"event=load_error", // the load after the decode failure
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the log has no %q:\n%s", want, out)
		}
	}
}

func TestLevels(t *testing.T) {
	m := memory.New(nil)
	defer m.Close()

	// The handler's level (Info) hides Debug records: only the error shows.
	logger, out := newJSONLogger(slog.LevelInfo)
	c := cachekit.WithHooks(m, logging.New(logger, nil))
	_, _ = c.Get(bg, "k")
	_, _ = c.Get(bg, "")
	recs := out.records(t)
	if len(recs) != 1 || recs[0]["level"] != "ERROR" || recs[0]["outcome"] != "error" {
		t.Errorf("records %v, want the invalid key's error only", recs)
	}
	if _, timed := recs[0]["duration"]; timed {
		t.Errorf("record %v has a duration with Level disabled", recs[0])
	}

	// Levels are configurable, and dynamic through a LevelVar.
	var lv slog.LevelVar
	lv.Set(slog.LevelDebug)
	c = cachekit.WithHooks(m, logging.New(logger, &logging.Options{Level: &lv, ErrorLevel: slog.LevelWarn}))
	_, _ = c.Get(bg, "k")
	_, _ = c.Get(bg, "")
	recs = out.records(t)
	if len(recs) != 1 || recs[0]["level"] != "WARN" {
		t.Errorf("records %v, want the error only, at WARN", recs)
	}
	lv.Set(slog.LevelInfo)
	_, _ = c.Get(bg, "k")
	recs = out.records(t)
	if len(recs) != 1 || recs[0]["level"] != "INFO" || recs[0]["outcome"] != "miss" {
		t.Errorf("records %v, want the miss at INFO", recs)
	}

	// Nothing enabled: nothing logged.
	logger, out = newJSONLogger(slog.LevelError + 4)
	c = cachekit.WithHooks(m, logging.New(logger, nil))
	_, _ = c.Get(bg, "")
	cachekit.Emit(bg, c, cachekit.Event{Kind: cachekit.EventLoadError, Err: errors.New("x")})
	if s := out.String(); s != "" {
		t.Errorf("logged %q with every level disabled", s)
	}
}

func TestKeys(t *testing.T) {
	logger, out := newJSONLogger(slog.LevelDebug)
	m := memory.New(nil)
	defer m.Close()
	c := cachekit.WithHooks(m, logging.New(logger, &logging.Options{MaxKeyLen: 8}))

	long := strings.Repeat("k", 100)
	_, _ = c.Get(bg, long)
	_, _ = c.Get(bg, "\x00\xffbin\n")
	_, _ = c.Get(bg, "aéééé") // byte 8 is inside the fourth é
	_, _ = c.Get(bg, `"quoted" key`)
	_, _ = c.Get(bg, "fine")
	recs := out.records(t)
	want := []struct {
		key    string
		keyLen any
	}{
		{"kkkkkkkk...", float64(100)},
		{`"\x00\xffbin\n"`, nil},
		{"aééé...", float64(9)},
		{`"\"quoted\""...`, float64(12)},
		{"fine", nil},
	}
	if len(recs) != len(want) {
		t.Fatalf("%d records", len(recs))
	}
	for i, w := range want {
		if recs[i]["key"] != w.key || recs[i]["key_len"] != w.keyLen {
			t.Errorf("record %d: key %q key_len %v; want %q, %v", i, recs[i]["key"], recs[i]["key_len"], w.key, w.keyLen)
		}
	}
}

func TestEvents(t *testing.T) {
	logger, out := newJSONLogger(slog.LevelDebug)
	m := memory.New(nil)
	defer m.Close()
	c := cachekit.WithHooks(m, logging.New(logger, nil))
	typed := cachekit.NewTyped[string](c, nil)
	_, _ = typed.GetOrLoad(bg, "k", func(context.Context) (string, error) { return "v", nil })
	_, _ = typed.GetOrLoad(bg, "e", func(context.Context) (string, error) { return "", errors.New("no luck") })
	var events []map[string]any
	for _, r := range out.records(t) {
		if r["msg"] == "cachekit event" {
			events = append(events, r)
		}
	}
	if len(events) != 2 {
		t.Fatalf("events %v", events)
	}
	if events[0]["event"] != "load" || events[0]["key"] != "k" || events[0]["level"] != "DEBUG" {
		t.Errorf("load event %v", events[0])
	}
	if _, ok := events[0]["duration"].(float64); !ok {
		t.Errorf("load event has no duration: %v", events[0])
	}
	if events[1]["event"] != "load_error" || events[1]["level"] != "ERROR" || events[1]["error"] != "no luck" {
		t.Errorf("load error event %v", events[1])
	}
}

func TestNilLoggerAndOptions(t *testing.T) {
	m := memory.New(nil)
	defer m.Close()
	c := cachekit.WithHooks(m, logging.New(nil, nil)) // slog.Default(), Info: Debug records hidden
	if err := c.Set(bg, "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
}

func TestNoAllocationsWhenDisabled(t *testing.T) {
	m := memory.New(nil)
	defer m.Close()
	_ = m.Set(bg, "k", []byte("v"), 0)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil)) // Info: Debug records hidden
	c := cachekit.WithHooks(m, logging.New(logger, nil))
	bare := testing.AllocsPerRun(1000, func() { _, _ = m.Get(bg, "k") })
	hooked := testing.AllocsPerRun(1000, func() { _, _ = c.Get(bg, "k") })
	if hooked != bare {
		t.Errorf("Get allocates %v times with logging at a disabled level, %v bare", hooked, bare)
	}
}

func Example() {
	ctx := context.Background()
	// A text handler without the time and duration, so the output is the
	// same on every run.
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == "duration" {
				return slog.Attr{}
			}
			return a
		},
	}))
	c := cachekit.WithHooks(memory.New(nil), logging.New(logger, nil))
	defer c.Close()

	_ = c.Set(ctx, "user:42", []byte("secret profile"), time.Hour)
	_, _ = c.Get(ctx, "user:42")
	_, _ = c.Get(ctx, "user:43")
	_, _ = c.Increment(ctx, "user:42", 1)
	// Output:
	// level=DEBUG msg=cachekit op=Set key=user:42 outcome=ok ttl=1h0m0s size=14
	// level=DEBUG msg=cachekit op=Get key=user:42 outcome=hit size=14
	// level=DEBUG msg=cachekit op=Get key=user:43 outcome=miss
	// level=ERROR msg=cachekit op=Increment key=user:42 outcome=error error="cachekit: Increment \"user:42\": value is not an integer"
}

// CompareAndDelete, which WithHooks forwards when the cache has it, is one
// record with whether it deleted, and never the compared value.
func TestCompareAndDelete(t *testing.T) {
	logger, out := newJSONLogger(slog.LevelDebug)
	m := memory.New(nil)
	defer m.Close()
	c := cachekit.WithHooks(m, logging.New(logger, nil))
	cad, ok := c.(cachekit.CompareAndDeleter)
	if !ok {
		t.Fatal("WithHooks over the memory backend hides CompareAndDeleter")
	}
	_ = m.Set(bg, "lease", []byte("secret-token"), 0)
	_, _ = cad.CompareAndDelete(bg, "lease", []byte("wrong-token"))
	_, _ = cad.CompareAndDelete(bg, "lease", []byte("secret-token"))
	recs := out.records(t)
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2: %v", len(recs), recs)
	}
	for i, deleted := range []bool{false, true} {
		r := recs[i]
		if r["op"] != "CompareAndDelete" || r["key"] != "lease" || r["outcome"] != "ok" || r["deleted"] != deleted {
			t.Errorf("record %d = %v; want op CompareAndDelete, key lease, outcome ok, deleted %v", i, r, deleted)
		}
	}
	if strings.Contains(out.String(), "token") {
		t.Errorf("a compared value reached the log: %s", out.String())
	}
}

func TestCompareAndSwap(t *testing.T) {
	logger, out := newJSONLogger(slog.LevelDebug)
	m := memory.New(nil)
	defer m.Close()
	c := cachekit.WithHooks(m, logging.New(logger, nil))
	cas, ok := c.(cachekit.CompareAndSwapper)
	if !ok {
		t.Fatal("WithHooks over the memory backend hides CompareAndSwapper")
	}
	_ = m.Set(bg, "doc", []byte("secret-v1"), 0)
	_, _ = cas.CompareAndSwap(bg, "doc", []byte("secret-v0"), []byte("secret-v2"), time.Minute)
	_, _ = cas.CompareAndSwap(bg, "doc", []byte("secret-v1"), []byte("secret-v2"), time.Minute)
	recs := out.records(t)
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2: %v", len(recs), recs)
	}
	for i, swapped := range []bool{false, true} {
		r := recs[i]
		if r["op"] != "CompareAndSwap" || r["key"] != "doc" || r["outcome"] != "ok" || r["swapped"] != swapped || r["ttl"] == nil {
			t.Errorf("record %d = %v; want op CompareAndSwap, key doc, outcome ok, swapped %v, a ttl", i, r, swapped)
		}
	}
	if strings.Contains(out.String(), "secret") {
		t.Errorf("a compared or stored value reached the log: %s", out.String())
	}
}
