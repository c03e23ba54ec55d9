package bench

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
)

// Benchmarks that need a server take its address from CACHEKIT_BENCH_*,
// else from the integration suite's CACHEKIT_TEST_* variables (the first
// address of a list), so that `make test` runs them on the same servers:
//
//	CACHEKIT_BENCH_REDIS_ADDR          else CACHEKIT_TEST_REDIS_ADDR
//	CACHEKIT_BENCH_MEMCACHED_ADDR      else the first of CACHEKIT_TEST_MEMCACHED_ADDRS
//	CACHEKIT_BENCH_REDIS_CLUSTER_ADDRS else CACHEKIT_TEST_REDIS_CLUSTER_ADDRS (optional: adds cluster rows)
//
// Without one they skip, or fail when CI is set: CI must run them.
var benchFallback = map[string]string{
	"CACHEKIT_BENCH_REDIS_ADDR":          "CACHEKIT_TEST_REDIS_ADDR",
	"CACHEKIT_BENCH_MEMCACHED_ADDR":      "CACHEKIT_TEST_MEMCACHED_ADDRS",
	"CACHEKIT_BENCH_REDIS_CLUSTER_ADDRS": "CACHEKIT_TEST_REDIS_CLUSTER_ADDRS",
}

// benchEnv returns the addresses for env (see benchFallback) and the
// variable they came from; none if neither is set.
func benchEnv(env string) (addrs []string, from string) {
	for _, name := range []string{env, benchFallback[env]} {
		if name == "" {
			continue
		}
		for _, a := range strings.Split(os.Getenv(name), ",") {
			if a = strings.TrimSpace(a); a != "" {
				addrs = append(addrs, a)
			}
		}
		if len(addrs) > 0 {
			return addrs, name
		}
	}
	return nil, ""
}

// serverAddr returns the server address for env (CACHEKIT_BENCH_REDIS_ADDR
// or CACHEKIT_BENCH_MEMCACHED_ADDR, see benchFallback), or skips the
// benchmark saying what to set; under CI it fails instead.
func serverAddr(b *testing.B, env string) string {
	b.Helper()
	addrs, from := benchEnv(env)
	if len(addrs) == 0 {
		benchUsage.note(env, "", b.Name())
		msg := fmt.Sprintf("set %s (or %s) to a server address to run this benchmark", env, benchFallback[env])
		if os.Getenv("CI") != "" {
			b.Fatalf("%s (CI is set, so a missing server fails the benchmark)", msg)
		}
		b.Skip(msg)
	}
	benchUsage.note(env, addrs[0]+" from "+from, b.Name())
	return addrs[0]
}

// clusterAddrs returns the Redis Cluster addresses for the optional cluster
// rows (CACHEKIT_BENCH_REDIS_CLUSTER_ADDRS, else
// CACHEKIT_TEST_REDIS_CLUSTER_ADDRS), or nil.
func clusterAddrs() []string {
	addrs, from := benchEnv("CACHEKIT_BENCH_REDIS_CLUSTER_ADDRS")
	if len(addrs) > 0 {
		benchUsage.note("CACHEKIT_BENCH_REDIS_CLUSTER_ADDRS", strings.Join(addrs, ",")+" from "+from, "cluster rows")
	}
	return addrs
}

// benchUsage remembers which servers the benchmarks ran on, for the summary
// TestMain prints.
var benchUsage benchUsages

type benchUsages struct {
	sync.Mutex
	m map[string]*benchUse
}

type benchUse struct {
	source  string
	ran     map[string]bool
	skipped map[string]bool
}

func (u *benchUsages) note(env, source, bench string) {
	u.Lock()
	defer u.Unlock()
	if u.m == nil {
		u.m = map[string]*benchUse{}
	}
	e := u.m[env]
	if e == nil {
		e = &benchUse{ran: map[string]bool{}, skipped: map[string]bool{}}
		u.m[env] = e
	}
	if source == "" {
		e.skipped[bench] = true
		return
	}
	e.source = source
	e.ran[bench] = true
}

// TestMain runs the benchmarks, then says which servers they ran on and
// which were missing (shown without -v when go test runs in local directory
// mode, as the Makefile does).
func TestMain(m *testing.M) {
	code := m.Run()
	benchUsage.Lock()
	names := make([]string, 0, len(benchUsage.m))
	for name := range benchUsage.m {
		names = append(names, name)
	}
	sort.Strings(names)
	if len(names) > 0 {
		fmt.Println("bench: servers:")
	}
	for _, name := range names {
		e := benchUsage.m[name]
		switch {
		case len(e.skipped) > 0:
			fmt.Printf("  %-36s skipped %d benchmark(s): set %s (or %s)\n", name, len(e.skipped), name, benchFallback[name])
		default:
			fmt.Printf("  %-36s ran %d benchmark(s) on %s\n", name, len(e.ran), e.source)
		}
	}
	benchUsage.Unlock()
	os.Exit(code)
}
