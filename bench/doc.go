// Package bench holds cachekit's benchmarks: cachekit side by side with the
// raw clients (otter, go-redis, gomemcache) and peer libraries, in one run.
// It is a nested module so that the peers never enter the library's go.mod.
//
// Benchmarks that need a server read its address from the environment:
// CACHEKIT_BENCH_REDIS_ADDR, CACHEKIT_BENCH_REDIS_CLUSTER_ADDRS and
// CACHEKIT_BENCH_MEMCACHED_ADDR when set, else the integration suite's
// CACHEKIT_TEST_REDIS_ADDR, CACHEKIT_TEST_REDIS_CLUSTER_ADDRS and
// CACHEKIT_TEST_MEMCACHED_ADDRS. Without an address they skip, except under CI
// (the CI variable set), where they fail.
//
// BENCHMARKS.md at the repository root gives the command for every row.
package bench
