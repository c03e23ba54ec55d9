package flight

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestOneLoadForManyCallers(t *testing.T) {
	var g Group[string, int]
	var calls atomic.Int32
	release := make(chan struct{})
	fn := func(context.Context) (int, error) {
		calls.Add(1)
		<-release
		return 42, nil
	}
	const n = 1000
	var wg sync.WaitGroup
	var joinedCount atomic.Int32
	var started sync.WaitGroup
	started.Add(n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			started.Done()
			v, err, joined := g.Do(context.Background(), "k", fn)
			if err != nil || v != 42 {
				t.Errorf("Do = %d, %v; want 42, nil", v, err)
			}
			if joined {
				joinedCount.Add(1)
			}
		}()
	}
	started.Wait()
	time.Sleep(50 * time.Millisecond) // let the callers reach Do
	close(release)
	wg.Wait()
	if c := calls.Load(); c != 1 {
		t.Fatalf("fn ran %d times; want 1", c)
	}
	if j := joinedCount.Load(); j != n-1 {
		t.Fatalf("%d callers joined; want %d", j, n-1)
	}
}

func TestCallerLeavingDoesNotFailOthers(t *testing.T) {
	var g Group[string, string]
	release := make(chan struct{})
	var loadCtxErr atomic.Value
	fn := func(ctx context.Context) (string, error) {
		<-release
		if ctx.Err() != nil {
			loadCtxErr.Store(ctx.Err())
		}
		return "v", nil
	}
	leaverCtx, cancelLeaver := context.WithCancel(context.Background())
	leaverDone := make(chan error)
	go func() {
		_, err, _ := g.Do(leaverCtx, "k", fn)
		leaverDone <- err
	}()
	time.Sleep(20 * time.Millisecond)
	stayerDone := make(chan string)
	go func() {
		v, err, joined := g.Do(context.Background(), "k", fn)
		if err != nil || !joined {
			t.Errorf("stayer: %v, joined=%v", err, joined)
		}
		stayerDone <- v
	}()
	time.Sleep(20 * time.Millisecond)
	cancelLeaver()
	if err := <-leaverDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("leaver got %v; want context.Canceled", err)
	}
	close(release)
	if v := <-stayerDone; v != "v" {
		t.Fatalf("stayer got %q; want v", v)
	}
	if e := loadCtxErr.Load(); e != nil {
		t.Fatalf("load context was cancelled (%v) while a caller still waited", e)
	}
}

func TestLoadCancelledWhenAllCallersLeave(t *testing.T) {
	var g Group[string, int]
	cancelled := make(chan struct{})
	fn := func(ctx context.Context) (int, error) {
		<-ctx.Done()
		close(cancelled)
		return 0, ctx.Err()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err, _ := g.Do(ctx, "k", fn)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Do = %v; want DeadlineExceeded", err)
	}
	select {
	case <-cancelled:
	case <-time.After(time.Second):
		t.Fatal("load context not cancelled after the only caller left")
	}
	// A new caller starts a fresh load rather than joining the cancelled one.
	v, err, joined := g.Do(context.Background(), "k", func(context.Context) (int, error) { return 7, nil })
	if err != nil || v != 7 || joined {
		t.Fatalf("fresh Do = %d, %v, joined=%v; want 7, nil, false", v, err, joined)
	}
}

func TestLoadKeepsValuesButNotDeadline(t *testing.T) {
	var g Group[string, string]
	type key struct{}
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), key{}, "trace-1"), time.Hour)
	defer cancel()
	v, err, _ := g.Do(ctx, "k", func(ctx context.Context) (string, error) {
		if _, ok := ctx.Deadline(); ok {
			return "", errors.New("load context has the caller's deadline")
		}
		return ctx.Value(key{}).(string), nil
	})
	if err != nil || v != "trace-1" {
		t.Fatalf("Do = %q, %v; want trace-1, nil", v, err)
	}
}

func TestPanicReachesEveryWaiter(t *testing.T) {
	var g Group[string, int]
	release := make(chan struct{})
	fn := func(context.Context) (int, error) {
		<-release
		panic("boom")
	}
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err, _ := g.Do(context.Background(), "k", fn)
			var p *PanicError
			if !errors.As(err, &p) || p.Value != "boom" || len(p.Stack) == 0 {
				t.Errorf("Do = %v; want a *PanicError for boom with a stack", err)
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	wg.Wait()
	// The group is usable afterwards.
	if v, err, _ := g.Do(context.Background(), "k", func(context.Context) (int, error) { return 1, nil }); err != nil || v != 1 {
		t.Fatalf("Do after panic = %d, %v", v, err)
	}
}

func TestPanicWithErrorUnwraps(t *testing.T) {
	var g Group[int, int]
	sentinel := errors.New("sentinel")
	_, err, _ := g.Do(context.Background(), 1, func(context.Context) (int, error) { panic(sentinel) })
	if !errors.Is(err, sentinel) {
		t.Fatalf("Do = %v; want it to unwrap to the panic's error", err)
	}
}

func TestDoneContextReturnsAtOnce(t *testing.T) {
	var g Group[string, int]
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	_, err, _ := g.Do(ctx, "k", func(context.Context) (int, error) { ran = true; return 1, nil })
	if !errors.Is(err, context.Canceled) || ran {
		t.Fatalf("Do with a cancelled ctx = %v, ran=%v; want Canceled, not run", err, ran)
	}
}

func TestForget(t *testing.T) {
	var g Group[string, int]
	release := make(chan struct{})
	go g.Do(context.Background(), "k", func(context.Context) (int, error) { <-release; return 1, nil })
	time.Sleep(10 * time.Millisecond)
	g.Forget("k")
	v, _, joined := g.Do(context.Background(), "k", func(context.Context) (int, error) { return 2, nil })
	close(release)
	if v != 2 || joined {
		t.Fatalf("Do after Forget = %d, joined=%v; want a fresh load", v, joined)
	}
	time.Sleep(10 * time.Millisecond)
}

// A load that calls runtime.Goexit (t.FailNow in a loader, say) reaches
// every waiter as ErrGoexit: no zero value with a nil error, no hang.
func TestGoexitReachesEveryWaiter(t *testing.T) {
	var g Group[string, int]
	release := make(chan struct{})
	fn := func(context.Context) (int, error) {
		<-release
		runtime.Goexit()
		return 1, nil
	}
	const n = 10
	var wg sync.WaitGroup
	var started sync.WaitGroup
	started.Add(n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			started.Done()
			v, err, _ := g.Do(context.Background(), "k", fn)
			if !errors.Is(err, ErrGoexit) || v != 0 {
				t.Errorf("Do with a loader calling Goexit = %d, %v; want 0, ErrGoexit", v, err)
			}
		}()
	}
	started.Wait()
	time.Sleep(20 * time.Millisecond)
	close(release)
	wg.Wait()
	g.Wait()
	// The group is usable afterwards.
	if v, err, _ := g.Do(context.Background(), "k", func(context.Context) (int, error) { return 2, nil }); err != nil || v != 2 {
		t.Fatalf("Do after Goexit = %d, %v; want 2, nil", v, err)
	}
}

// Wait returns only after loads that every caller left have ended.
func TestWaitForLoadsNobodyWaitsFor(t *testing.T) {
	var g Group[string, int]
	release := make(chan struct{})
	var ended atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(10 * time.Millisecond); cancel() }()
	_, err, _ := g.Do(ctx, "k", func(context.Context) (int, error) {
		<-release // ignores its context
		ended.Store(true)
		return 1, nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Do = %v; want Canceled", err)
	}
	waited := make(chan struct{})
	go func() { g.Wait(); close(waited) }()
	select {
	case <-waited:
		t.Fatal("Wait returned while a load was still running")
	case <-time.After(30 * time.Millisecond):
	}
	close(release)
	<-waited
	if !ended.Load() {
		t.Fatal("Wait returned before the load ended")
	}
	g.Wait() // nothing running: returns at once
}
