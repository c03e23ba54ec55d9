package decorator_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var bg = context.Background()

// newMem returns an empty memory cache closed at the end of the test.
func newMem(t testing.TB) *memory.Cache {
	t.Helper()
	c := memory.New(nil)
	t.Cleanup(func() { c.Close() })
	return c
}

// spy wraps a Cache: it counts operations, records events, and injects
// failures and delays.
type spy struct {
	cachekit.Cache

	gets, getManys, sets, setManys, adds, deletes, cads atomic.Int32

	mu     sync.Mutex
	events []cachekit.Event

	getErr  atomic.Value // error returned by Get and GetMany
	setErr  atomic.Value // error returned by Set and SetMany
	getHang atomic.Bool  // Get waits for ctx
}

func newSpy(c cachekit.Cache) *spy { return &spy{Cache: c} }

func (s *spy) err(v *atomic.Value) error {
	if e, ok := v.Load().(error); ok {
		return e
	}
	return nil
}

func (s *spy) Get(ctx context.Context, key string) ([]byte, error) {
	s.gets.Add(1)
	if s.getHang.Load() {
		<-ctx.Done()
		return nil, cachekit.WrapError("Get", key, ctx.Err())
	}
	if err := s.err(&s.getErr); err != nil {
		return nil, cachekit.WrapError("Get", key, err)
	}
	return s.Cache.Get(ctx, key)
}

func (s *spy) GetMany(ctx context.Context, keys []string) (map[string][]byte, error) {
	s.getManys.Add(1)
	if err := s.err(&s.getErr); err != nil {
		return nil, cachekit.WrapError("GetMany", "", err)
	}
	return s.Cache.GetMany(ctx, keys)
}

func (s *spy) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	s.sets.Add(1)
	if err := s.err(&s.setErr); err != nil {
		return cachekit.WrapError("Set", key, err)
	}
	return s.Cache.Set(ctx, key, v, ttl)
}

func (s *spy) SetMany(ctx context.Context, items map[string][]byte, ttl time.Duration) error {
	s.setManys.Add(1)
	if err := s.err(&s.setErr); err != nil {
		return cachekit.WrapError("SetMany", "", err)
	}
	return s.Cache.SetMany(ctx, items, ttl)
}

func (s *spy) Add(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	s.adds.Add(1)
	return s.Cache.Add(ctx, key, v, ttl)
}

func (s *spy) Delete(ctx context.Context, keys ...string) (int, error) {
	s.deletes.Add(1)
	return s.Cache.Delete(ctx, keys...)
}

// CompareAndDelete forwards to the wrapped cache, as every wrapper of a
// cachekit.CompareAndDeleter must (the lease needs it).
func (s *spy) CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	s.cads.Add(1)
	return s.Cache.(cachekit.CompareAndDeleter).CompareAndDelete(ctx, key, old)
}

// HandleEvent records ev.
func (s *spy) HandleEvent(_ context.Context, ev cachekit.Event) {
	s.mu.Lock()
	s.events = append(s.events, ev)
	s.mu.Unlock()
}

// count returns how many events of kind were recorded.
func (s *spy) count(kind cachekit.EventKind) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, ev := range s.events {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

// errorLog collects what OnError receives.
type errorLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *errorLog) onError(_ context.Context, err error) {
	l.mu.Lock()
	l.errs = append(l.errs, err)
	l.mu.Unlock()
}

func (l *errorLog) all() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]error(nil), l.errs...)
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
