// Package integration_test runs cachekit against real Redis, Redis Cluster and
// Memcached servers. It is a nested module (its own go.mod, with
// github.com/cachekit/cachekit replaced by ../), so that the library's
// go.mod carries none of testcontainers-go's dependencies.
//
// # Running
//
// From the repository root, `make test` runs it after the root module's tests
// (see the Makefile); on its own:
//
//	cd integration_test && go test -race -count=1 ./...
//
// Each test asks the harness (servers_test.go) for servers with
// redisServer(t), redisCluster(t) or memcachedServers(t, n). Servers are
// found, in this order:
//
//  1. From the environment, when set (comma-separated lists; no passwords):
//
//     CACHEKIT_TEST_REDIS_ADDR=127.0.0.1:6379
//     CACHEKIT_TEST_REDIS_CLUSTER_ADDRS=127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002
//     CACHEKIT_TEST_MEMCACHED_ADDRS=127.0.0.1:11211,127.0.0.1:11212
//
//     `make compose-up` (docker-compose.yml) starts Redis on 6379 and
//     memcached on 11211 and 11212; COMPOSE_PROFILES=cluster adds a cluster
//     on 7000-7002. A test that needs n memcached servers treats a list of
//     fewer than n as none.
//
//  2. Else as containers, with testcontainers-go and a Docker engine
//     (DOCKER_HOST, else the default socket). The images are
//     CACHEKIT_TEST_REDIS_IMAGE (default redis:7.4) and
//     CACHEKIT_TEST_MEMCACHED_IMAGE (default memcached:1.6). Where images
//     can't be pulled, `make test-images` (docker/build-test-images.sh)
//     builds cachekit-test/redis:local and cachekit-test/memcached:local from
//     Debian's redis-server and memcached binaries:
//
//     make test-images
//     CACHEKIT_TEST_REDIS_IMAGE=cachekit-test/redis:local \
//     CACHEKIT_TEST_MEMCACHED_IMAGE=cachekit-test/memcached:local \
//     go test -race -count=1 ./...
//
//     Each kind of server starts at most once per test binary, on first use,
//     and is shared by all tests: use unique keys or a unique namespace per
//     test, and never flush a whole server. Standalone Redis and memcached
//     publish their ports on 127.0.0.1 (an engine reached through a unix
//     socket is taken to be on this host; set TESTCONTAINERS_HOST_OVERRIDE
//     where it is not). The Redis Cluster is three masters on host
//     networking at free 127.0.0.1 ports, so it needs a Linux engine (not
//     Docker Desktop); elsewhere give CACHEKIT_TEST_REDIS_CLUSTER_ADDRS.
//     memcached is started with "-u nobody", which it reads only when it runs
//     as root (both images above run as a non-root user).
//
//     TestMain terminates every container after the tests, and on SIGINT or
//     SIGTERM; containers carry the labels org.cachekit.integration=1 and
//     org.cachekit.integration.pid, so those of a binary killed outright are
//     removed by the next run. The Ryuk reaper is therefore off
//     (TESTCONTAINERS_RYUK_DISABLED=true) unless that variable is set; its
//     image can't be pulled everywhere.
//
//  3. Else the test is skipped, with a message saying how to run it. But when
//     CI is set (to anything non-empty) it fails instead: CI must never pass
//     by skipping the integration suite. .ci/run builds the local images and
//     uses Docker, or, where the engine can't run them, starts Debian's
//     servers as processes and passes their addresses in the variables of 1.
//
// After the tests, TestMain also fails the run if goroutines are left
// running (go.uber.org/goleak): close every client a test opens.
package integration_test
