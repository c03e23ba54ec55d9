package integration_test

// Package lock and Typed.Update across real OS processes: the tests build
// internal/lockworker and run several copies at once against Redis, a
// Redis Cluster and Memcached, each process with its own client and
// connections, all in one namespace unique to the test.
//
//	CACHEKIT_TEST_REDIS_ADDR=127.0.0.1:6379 CACHEKIT_TEST_MEMCACHED_ADDRS=127.0.0.1:11211 \
//	CACHEKIT_TEST_REDIS_CLUSTER_ADDRS=127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002 \
//	    go test -race -run 'TestLock' .    # TestLockProcesses, TestLockRoundTrips

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memcached"
	"github.com/cachekit/cachekit/backend/redis"
	"github.com/cachekit/cachekit/lock"
)

// lockBackend gives the URL of a cache in a namespace on one kind of
// server (skipping the test when the harness has none).
type lockBackend struct {
	name string
	url  func(t *testing.T, ns string) string
}

func lockBackends() []lockBackend {
	return []lockBackend{
		{"redis", func(t *testing.T, ns string) string {
			return "redis://" + redisServer(t) + "/0?timeout=5s&namespace=" + ns
		}},
		{"redis-cluster", func(t *testing.T, ns string) string {
			return "redis+cluster://" + strings.Join(redisCluster(t), ",") + "?timeout=5s&namespace=" + ns
		}},
		{"memcached", func(t *testing.T, ns string) string {
			return "memcached://" + memcachedServers(t, 1)[0] + "?timeout=5s&namespace=" + ns
		}},
	}
}

// lockRun runs test once per backend, in a fresh namespace that the
// harness sweeps after the run, with the URL of a cache in it and the
// parent's own cache there.
func lockRun(t *testing.T, test func(t *testing.T, url string, c cachekit.Cache)) {
	for _, b := range lockBackends() {
		t.Run(b.name, func(t *testing.T) {
			var r [6]byte
			if _, err := rand.Read(r[:]); err != nil {
				t.Fatal(err)
			}
			url := b.url(t, sweepNamespace("lock-"+hex.EncodeToString(r[:])))
			c, err := cachekit.Open(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			test(t, url, c)
		})
	}
}

// lockWorker builds internal/lockworker into dir on the first call of the
// function it returns (a test that skips for want of servers builds
// nothing), and returns the program's path.
func lockWorker(dir string) func(t *testing.T) string {
	var once sync.Once
	var bin string
	var err error
	return func(t *testing.T) string {
		t.Helper()
		once.Do(func() {
			goTool, lerr := exec.LookPath("go")
			if lerr != nil {
				goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
			}
			bin = filepath.Join(dir, "lockworker")
			var out []byte
			if out, err = exec.Command(goTool, "build", "-o", bin, "./internal/lockworker").CombinedOutput(); err != nil {
				err = fmt.Errorf("building internal/lockworker: %v\n%s", err, out)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		return bin
	}
}

// lockWorkers runs procs workers with args, started together a moment after
// all are up, and returns each one's standard output.
func lockWorkers(t *testing.T, bin string, procs int, args ...string) []string {
	t.Helper()
	start := strconv.FormatInt(time.Now().Add(2*time.Second).UnixNano(), 10)
	outs := make([]string, procs)
	errs := make([]error, procs)
	var wg sync.WaitGroup
	for i := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(bin, append([]string{"-start", start}, args...)...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				errs[i] = fmt.Errorf("%v: %s", err, stderr.Bytes())
			}
			outs[i] = stdout.String()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v\n%s", i, err, outs[i])
		}
	}
	return outs
}

// TestLockProcesses runs the tests that need processes of their own, with
// one build of internal/lockworker.
func TestLockProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	bin := lockWorker(t.TempDir())
	t.Run("MutualExclusion", func(t *testing.T) { lockMutualExclusion(t, bin) })
	t.Run("FrozenHolder", func(t *testing.T) { lockFrozenHolder(t, bin) })
	t.Run("Update", func(t *testing.T) { lockUpdate(t, bin) })
}

// 4 processes x 25 critical sections of read-sleep-write on a counter,
// under one lock: every section read a different value (none overlapped),
// the counter ends exact, and tokens strictly increase in the order the
// sections ran.
func lockMutualExclusion(t *testing.T, bin func(*testing.T) string) {
	lockRun(t, func(t *testing.T, url string, c cachekit.Cache) {
		const procs, each = 4, 25
		outs := lockWorkers(t, bin(t), procs, "-url", url, "-mode", "mutex", "-n", strconv.Itoa(each))
		tokenAt := make([]uint64, procs*each) // by the counter value read in the section
		re := regexp.MustCompile(`(?m)^cs n=(\d+) token=(\d+)$`)
		seen := 0
		for i, out := range outs {
			ms := re.FindAllStringSubmatch(out, -1)
			if len(ms) != each {
				t.Fatalf("worker %d reported %d critical sections, want %d:\n%s", i, len(ms), each, out)
			}
			for _, m := range ms {
				n, _ := strconv.Atoi(m[1])
				tok, _ := strconv.ParseUint(m[2], 10, 64)
				if n < 0 || n >= len(tokenAt) || tokenAt[n] != 0 {
					t.Fatalf("two critical sections read counter value %d: they overlapped", n)
				}
				tokenAt[n] = tok
				seen++
			}
		}
		if seen != procs*each {
			t.Fatalf("%d critical sections, want %d", seen, procs*each)
		}
		for n := 1; n < len(tokenAt); n++ {
			if tokenAt[n] <= tokenAt[n-1] {
				t.Fatalf("section %d had token %d after token %d: tokens must strictly increase", n, tokenAt[n], tokenAt[n-1])
			}
		}
		if b, err := c.Get(context.Background(), "counter"); err != nil || string(b) != strconv.Itoa(procs*each) {
			t.Fatalf("counter %q (%v), want %d", b, err, procs*each)
		}
	})
}

// A holder process frozen with SIGSTOP past its TTL loses the lock to
// another process (this one); after SIGCONT its Extend and Release return
// ErrLockLost and leave the new holder's lease alone.
func lockFrozenHolder(t *testing.T, bin func(*testing.T) string) {
	lockRun(t, func(t *testing.T, url string, c cachekit.Cache) {
		ctx := context.Background()
		cmd := exec.Command(bin(t), "-url", url, "-mode", "hold", "-ttl", "1s")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdoutPipe, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid := cmd.Process.Pid
		waited := false
		t.Cleanup(func() { // a test that failed half-way leaves no process behind
			if !waited {
				syscall.Kill(pid, syscall.SIGCONT)
				cmd.Process.Kill()
				cmd.Wait()
			}
		})
		stdout := bufio.NewReader(stdoutPipe)
		line, err := stdout.ReadString('\n')
		if err != nil {
			t.Fatalf("holder: %v (%s)", err, stderr.Bytes())
		}
		var first uint64
		if _, err := fmt.Sscanf(line, "acquired token=%d", &first); err != nil {
			t.Fatalf("holder said %q: %v", line, err)
		}
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}

		// The lease is the holder's until its TTL (1s; up to 3s on
		// Memcached, which rounds up to whole seconds plus one) passes.
		locker := lock.New(c, &lock.Options{TTL: time.Minute, MaxRetryDelay: 50 * time.Millisecond})
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		next, err := locker.Acquire(actx, "held")
		if err != nil {
			t.Fatalf("Acquire while the holder is frozen: %v", err)
		}
		if next.Token() <= first {
			t.Fatalf("new holder's token %d is not above the frozen holder's %d", next.Token(), first)
		}

		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(stdin, "go\n"); err != nil {
			t.Fatal(err)
		}
		line, err = stdout.ReadString('\n')
		if err != nil {
			t.Fatalf("holder after SIGCONT: %v (%s)", err, stderr.Bytes())
		}
		if !strings.HasPrefix(line, "extend-lost=true release-lost=true ") {
			t.Fatalf("thawed holder's Extend and Release: %q, want ErrLockLost for both", line)
		}
		waited = true
		if err := cmd.Wait(); err != nil {
			t.Fatalf("holder: %v (%s)", err, stderr.Bytes())
		}

		if _, err := lock.New(c, nil).TryAcquire(ctx, "held"); err != lock.ErrLocked {
			t.Fatalf("TryAcquire after the old holder's Extend and Release: %v, want ErrLocked", err)
		}
		if err := next.Extend(ctx, 0); err != nil {
			t.Fatalf("new holder's Extend: %v", err)
		}
		if err := next.Release(ctx); err != nil {
			t.Fatalf("new holder's Release: %v", err)
		}
	})
}

// lockCounter is lockworker's Counter.
type lockCounter struct {
	N     int    `json:"n"`
	Other int    `json:"other"`
	Note  string `json:"note"`
}

// 4 processes x 25 Updates of a struct field, while this process keeps
// updating another field of the same value: both fields end exact (every
// successful Update is in the value), and every one of this process's
// Updates either succeeded or returned ErrConflict.
func lockUpdate(t *testing.T, bin func(*testing.T) string) {
	lockRun(t, func(t *testing.T, url string, c cachekit.Cache) {
		ctx := context.Background()
		typed := cachekit.NewTyped[lockCounter](c, nil)
		stop := make(chan struct{})
		var writes, conflicts int
		var writer sync.WaitGroup
		writer.Add(1)
		go func() { // the constant conflicting writer
			defer writer.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := typed.Update(ctx, "struct", func(old lockCounter, _ bool) (lockCounter, error) {
					old.Other++
					return old, nil
				})
				switch {
				case err == nil:
					writes++
				case errors.Is(err, cachekit.ErrConflict):
					conflicts++
				default:
					t.Error(err)
					return
				}
			}
		}()
		const procs, each = 4, 25
		outs := lockWorkers(t, bin(t), procs, "-url", url, "-mode", "update", "-n", strconv.Itoa(each))
		close(stop)
		writer.Wait()
		re := regexp.MustCompile(`(?m)^updates=(\d+) conflicts=(\d+)$`)
		var workerConflicts []string
		for i, out := range outs {
			m := re.FindStringSubmatch(out)
			if m == nil || m[1] != strconv.Itoa(each) {
				t.Fatalf("worker %d reported %q, want %d updates", i, out, each)
			}
			workerConflicts = append(workerConflicts, m[2])
		}
		v, err := typed.Get(ctx, "struct")
		if err != nil {
			t.Fatal(err)
		}
		if v.N != procs*each || v.Other != writes {
			t.Fatalf("value %+v; want N %d (the workers' Updates) and Other %d (this process's successful Updates)", v, procs*each, writes)
		}
		t.Logf("workers' Updates that gave up with ErrConflict (and were retried): %v; the writer's: %d successes, %d conflicts",
			workerConflicts, writes, conflicts)
	})
}

// lockTrips counts go-redis round trips: one per command or pipeline.
type lockTrips struct{ n atomic.Int64 }

func (h *lockTrips) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (h *lockTrips) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h *lockTrips) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// lockCountingConn counts a connection's writes: gomemcache writes each
// request at once and then waits for its reply, so a write is a round trip.
type lockCountingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c lockCountingConn) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(p)
}

// Round trips on the servers, counted in the clients: an uncontended
// Acquire + Release and an uncontended Update. Redis (and a Cluster):
// three (SET NX PX, INCRBY, EVALSHA) and two (GET, EVALSHA). Memcached,
// through its cachekit.Versioner: three (ms in add mode returning the cas
// id, incr, md comparing that cas id) and two (gets, ms comparing the cas
// id). The counting dialer sees the cache's own meta connections too, as
// they are dialed with the client's DialContext; each request, gomemcache's
// or meta, is one write followed by its reply.
func TestLockRoundTrips(t *testing.T) {
	ctx := context.Background()
	type server struct {
		name            string
		open            func(t *testing.T, ns string) (cachekit.Cache, *atomic.Int64)
		lockMax, updMax int64
		slack           int64 // extra round trips allowed over all rounds
	}
	servers := []server{
		{"redis", func(t *testing.T, ns string) (cachekit.Cache, *atomic.Int64) {
			client := goredis.NewClient(&goredis.Options{Addr: redisServer(t)})
			var h lockTrips
			client.AddHook(&h)
			c := redis.New(client, &redis.Options{Namespace: ns})
			t.Cleanup(func() { c.Close(); client.Close() })
			return c, &h.n
		}, 3, 2, 0},
		{"redis-cluster", func(t *testing.T, ns string) (cachekit.Cache, *atomic.Int64) {
			client := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: redisCluster(t)})
			var h lockTrips
			client.AddHook(&h)
			c := redis.New(client, &redis.Options{Namespace: ns})
			t.Cleanup(func() { c.Close(); client.Close() })
			return c, &h.n
		}, 3, 2, 0},
		{"memcached", func(t *testing.T, ns string) (cachekit.Cache, *atomic.Int64) {
			client := memcache.New(memcachedServers(t, 1)[0])
			var n atomic.Int64
			var d net.Dialer
			client.DialContext = func(ctx context.Context, network, address string) (net.Conn, error) {
				conn, err := d.DialContext(ctx, network, address)
				if err != nil {
					return nil, err
				}
				return lockCountingConn{conn, &n}, nil
			}
			c := memcached.New(client, &memcached.Options{Namespace: ns})
			t.Cleanup(func() { c.Close(); client.Close() })
			return c, &n
			// A namespace's generation is read again once a second
			// (generation_ttl) by AddVersion, Increment and the other
			// versioned writes: allow for that on a slow machine.
		}, 3, 2, 2},
	}
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			var r [6]byte
			rand.Read(r[:])
			c, trips := s.open(t, sweepNamespace("lock-"+hex.EncodeToString(r[:])))
			locker := lock.New(c, nil)
			typed := cachekit.NewTyped[lockCounter](c, nil)
			// Warm up: connections, a namespace's generation, Lua scripts
			// loaded, keys created.
			for range 2 {
				k, err := locker.Acquire(ctx, "res")
				if err != nil {
					t.Fatal(err)
				}
				if err := k.Release(ctx); err != nil {
					t.Fatal(err)
				}
				if _, err := typed.Update(ctx, "struct", func(v lockCounter, _ bool) (lockCounter, error) { v.N++; return v, nil }); err != nil {
					t.Fatal(err)
				}
			}
			const rounds = 10
			trips.Store(0)
			for range rounds {
				k, err := locker.Acquire(ctx, "res")
				if err != nil {
					t.Fatal(err)
				}
				if err := k.Release(ctx); err != nil {
					t.Fatal(err)
				}
			}
			lockTrips := trips.Swap(0)
			for range rounds {
				if _, err := typed.Update(ctx, "struct", func(v lockCounter, _ bool) (lockCounter, error) { v.N++; return v, nil }); err != nil {
					t.Fatal(err)
				}
			}
			updTrips := trips.Load()
			t.Logf("Acquire+Release: %.1f round trips; Update: %.1f", float64(lockTrips)/rounds, float64(updTrips)/rounds)
			if lockTrips > s.lockMax*rounds+s.slack {
				t.Errorf("Acquire+Release took %.1f round trips, want at most %d", float64(lockTrips)/rounds, s.lockMax)
			}
			if updTrips > s.updMax*rounds+s.slack {
				t.Errorf("Update took %.1f round trips, want at most %d", float64(updTrips)/rounds, s.updMax)
			}
		})
	}
}
