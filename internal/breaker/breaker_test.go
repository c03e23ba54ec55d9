package breaker

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/cachekit/cachekit"
)

func TestBreakerOpensProbesAndCloses(t *testing.T) {
	now := time.Unix(1000, 0)
	b := New(3, time.Second)
	b.SetClock(func() time.Time { return now })
	cause := syscall.ECONNREFUSED

	for i := 0; i < 2; i++ {
		if err := b.Allow(); err != nil {
			t.Fatalf("call %d refused before the threshold: %v", i, err)
		}
		b.Done(Failure, cause)
	}
	if b.Open() {
		t.Fatal("open after 2 failures, threshold 3")
	}
	if err := b.Allow(); err != nil {
		t.Fatal(err)
	}
	b.Done(Failure, cause)
	err := b.Allow()
	if !errors.Is(err, cachekit.ErrUnavailable) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("open breaker: %v; want ErrUnavailable wrapping ECONNREFUSED", err)
	}

	now = now.Add(time.Second)
	if err := b.Allow(); err != nil {
		t.Fatalf("no probe after the open period: %v", err)
	}
	if err := b.Allow(); !errors.Is(err, cachekit.ErrUnavailable) {
		t.Fatalf("second call during the probe: %v, want ErrUnavailable", err)
	}
	b.Done(Failure, cause)
	if err := b.Allow(); !errors.Is(err, cachekit.ErrUnavailable) {
		t.Fatalf("after a failed probe: %v, want ErrUnavailable", err)
	}
	now = now.Add(time.Second)
	if err := b.Allow(); err != nil {
		t.Fatal(err)
	}
	b.Done(Success, nil)
	if b.Open() {
		t.Fatal("still open after a successful probe")
	}
	if err := b.Allow(); err != nil {
		t.Fatal(err)
	}
	b.Done(Success, nil)
}

func TestBreakerSuccessResetsTheRun(t *testing.T) {
	b := New(2, time.Hour)
	for i := 0; i < 5; i++ {
		_ = b.Allow()
		b.Done(Failure, errors.New("x"))
		_ = b.Allow()
		b.Done(Success, nil)
	}
	if b.Open() {
		t.Fatal("opened although no two failures were consecutive")
	}
}

func TestBreakerIgnoredProbeLetsTheNextOneThrough(t *testing.T) {
	now := time.Unix(0, 0)
	b := New(1, time.Second)
	b.SetClock(func() time.Time { return now })
	_ = b.Allow()
	b.Done(Failure, errors.New("x"))
	now = now.Add(2 * time.Second)
	if err := b.Allow(); err != nil {
		t.Fatal(err)
	}
	b.Done(Ignore, nil)
	if err := b.Allow(); err != nil {
		t.Fatalf("a cancelled probe blocked the next one: %v", err)
	}
}

func TestNilBreakerNeverOpens(t *testing.T) {
	var b *Breaker = New(0, time.Second)
	if b != nil {
		t.Fatal("New(0, d) is not nil")
	}
	if err := b.Allow(); err != nil {
		t.Fatal(err)
	}
	b.Done(Failure, errors.New("x"))
	if b.Open() {
		t.Fatal("nil breaker open")
	}
}

func BenchmarkClosedBreaker(b *testing.B) {
	br := New(3, time.Second)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := br.Allow(); err != nil {
				b.Fatal(err)
			}
			br.Done(Success, nil)
		}
	})
}
