// Package bench holds cachekit's benchmarks: cachekit side by side with the
// raw clients (otter, go-redis, gomemcache) and peer libraries, in one run.
// It is a nested module so that the peers never enter the library's go.mod.
//
// Benchmarks that need a server read its address from the environment and
// skip without one:
//
//	CACHEKIT_BENCH_REDIS_ADDR=127.0.0.1:6379
//	CACHEKIT_BENCH_MEMCACHED_ADDR=127.0.0.1:11211
//
// BENCHMARKS.md at the repository root gives the command for every row.
package bench
