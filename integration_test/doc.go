// Package integration_test runs cachekit against real Redis (standalone,
// Cluster, Sentinel, TLS) and Memcached (one server and a pool) servers. It is
// a nested module (its own go.mod, with github.com/cachekit/cachekit replaced
// by ../), so that the library's go.mod carries none of testcontainers-go's
// dependencies.
//
// # Running
//
// From the repository root, `make test` runs it after the root module's tests
// (see the Makefile); on its own:
//
//	cd integration_test && go test -race -count=1 ./...
//
// Each test asks the harness (servers_test.go) for servers with
// redisServer(t), redisCluster(t), redisSentinel(t), redisTLS(t) or
// memcachedServers(t, n). Servers are found, in this order:
//
//  1. From the environment: CACHEKIT_TEST_REDIS_ADDR,
//     CACHEKIT_TEST_REDIS_CLUSTER_ADDRS, CACHEKIT_TEST_MEMCACHED_ADDRS,
//     CACHEKIT_TEST_REDIS_SENTINEL_ADDRS with CACHEKIT_TEST_REDIS_SENTINEL_MASTER,
//     CACHEKIT_TEST_REDIS_TLS_ADDR with CACHEKIT_TEST_REDIS_TLS_CA_FILE (the
//     README's "Running the integration tests" lists every variable).
//
//  2. Else as containers, with testcontainers-go and a Docker engine, from
//     CACHEKIT_TEST_REDIS_IMAGE (default redis:7.4) and
//     CACHEKIT_TEST_MEMCACHED_IMAGE (default memcached:1.6). When a default
//     image is absent and can't be pulled, the harness builds
//     cachekit-test/redis:local and cachekit-test/memcached:local from the
//     local redis-server and memcached binaries (docker/build-test-images.sh)
//     and uses them. CACHEKIT_TEST_DOCKER=0 leaves Docker out. Sentinel and
//     TLS servers not given by address are started by the harness as
//     redis-server processes on 127.0.0.1.
//
//  3. Else the test is skipped with one line naming what to provide. When CI
//     is set (to anything non-empty) it fails instead: CI must never pass by
//     skipping the integration suite.
//
// Fault-injection tests (*_faults_test.go, lock, backplane) start their own
// server processes with internal/testserver, which they freeze (SIGSTOP),
// kill and restart, and put internal/faultproxy between client and server to
// delay, hold, cut or lose replies.
//
// Servers are shared by all tests: each test uses unique keys or a unique
// namespace (recorded with sweepNamespace). After the tests TestMain prints a
// summary of what ran and what was skipped, per kind of server (without -v
// too), deletes the keys the tests left on servers given by address, removes
// its containers, and fails the run if goroutines are left running
// (go.uber.org/goleak).
package integration_test
