package integration_test

// The servers the integration tests run against. Tests call three helpers:
//
//	redisServer(t)            "host:port" of a standalone Redis
//	redisCluster(t)           addresses of a Redis Cluster (3 masters, all slots, state ok)
//	memcachedServers(t, n)    n distinct memcached addresses
//
// Each resolves its servers once per test binary and shares them between all
// tests (which must therefore isolate themselves with unique keys or
// namespaces, and never FLUSHALL/flush_all a shared server):
//
//  1. from the environment (CACHEKIT_TEST_REDIS_ADDR, CACHEKIT_TEST_REDIS_CLUSTER_ADDRS,
//     CACHEKIT_TEST_MEMCACHED_ADDRS), checked once for a real reply;
//  2. else as containers started with testcontainers-go from
//     CACHEKIT_TEST_REDIS_IMAGE / CACHEKIT_TEST_MEMCACHED_IMAGE, terminated by
//     TestMain after m.Run;
//  3. else the test is skipped with a message that says how to run it, or,
//     when CI is set, fails.
//
// Identifiers other than the three helpers start with "harness" so that the
// backend test files of this package can't collide with them.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	"github.com/testcontainers/testcontainers-go/wait"
)

const (
	harnessEnvCI                 = "CI"
	harnessEnvRedisAddr          = "CACHEKIT_TEST_REDIS_ADDR"
	harnessEnvRedisClusterAddrs  = "CACHEKIT_TEST_REDIS_CLUSTER_ADDRS"
	harnessEnvMemcachedAddrs     = "CACHEKIT_TEST_MEMCACHED_ADDRS"
	harnessEnvRedisImage         = "CACHEKIT_TEST_REDIS_IMAGE"
	harnessEnvMemcachedImage     = "CACHEKIT_TEST_MEMCACHED_IMAGE"
	harnessEnvRyukDisabled       = "TESTCONTAINERS_RYUK_DISABLED"
	harnessDefaultRedisImage     = "redis:7.4"
	harnessDefaultMemcachedImage = "memcached:1.6"
	harnessLocalRedisImage       = "cachekit-test/redis:local"
	harnessLocalMemcachedImage   = "cachekit-test/memcached:local"

	harnessClusterMasters      = 3
	harnessMaxMemcachedServers = 4

	// Labels on every container the harness starts, so that containers left
	// behind by a killed test binary can be found and removed by the next run.
	harnessLabel     = "org.cachekit.integration"
	harnessLabelPID  = "org.cachekit.integration.pid"
	harnessLabelHost = "org.cachekit.integration.host"

	harnessDockerTimeout  = 20 * time.Second // reaching the Docker engine
	harnessPullTimeout    = 90 * time.Second // one attempt to pull a missing image
	harnessStartupTimeout = 60 * time.Second // one container becoming ready
	harnessClusterTimeout = 60 * time.Second // the cluster reaching cluster_state:ok
	harnessStopTimeout    = 60 * time.Second // terminating everything in TestMain
)

// redisServer returns the "host:port" of a standalone Redis server shared by
// all tests of this binary: CACHEKIT_TEST_REDIS_ADDR, or a container of
// CACHEKIT_TEST_REDIS_IMAGE (default redis:7.4). Without either it skips the
// test, or fails it when CI is set.
func redisServer(t testing.TB) string {
	t.Helper()
	harnessRedis.once.Do(func() {
		if addr := strings.TrimSpace(os.Getenv(harnessEnvRedisAddr)); addr != "" {
			harnessRedis.addr, harnessRedis.fromEnv = addr, true
			harnessRedis.err = harnessWithTimeout(30*time.Second, func(ctx context.Context) error {
				return harnessPollReady(ctx, addr, harnessRedisPing)
			})
			return
		}
		harnessRedis.addr, harnessRedis.err = harnessStartRedis()
	})
	if harnessRedis.err != nil {
		harnessUnavailable(t, "Redis", harnessRedis.fromEnv, harnessRedis.err)
	}
	return harnessRedis.addr
}

// redisCluster returns the addresses of the nodes of a Redis Cluster with
// three masters, no replicas, all 16384 slots assigned and cluster_state:ok
// on every node, shared by all tests of this binary:
// CACHEKIT_TEST_REDIS_CLUSTER_ADDRS (comma-separated), or three containers of
// CACHEKIT_TEST_REDIS_IMAGE on host networking (Linux) at free 127.0.0.1
// ports. Without either it skips the test, or fails it when CI is set.
func redisCluster(t testing.TB) []string {
	t.Helper()
	harnessCluster.once.Do(func() {
		if env := os.Getenv(harnessEnvRedisClusterAddrs); strings.TrimSpace(env) != "" {
			addrs := harnessSplitAddrs(env)
			harnessCluster.addrs, harnessCluster.fromEnv = addrs, true
			harnessCluster.err = harnessWithTimeout(harnessClusterTimeout, func(ctx context.Context) error {
				for _, addr := range addrs {
					if err := harnessPollReady(ctx, addr, harnessRedisPing); err != nil {
						return err
					}
				}
				return harnessWaitClusterOK(ctx, addrs, 0)
			})
			return
		}
		harnessCluster.addrs, harnessCluster.err = harnessStartRedisCluster()
	})
	if harnessCluster.err != nil {
		harnessUnavailable(t, "Redis Cluster", harnessCluster.fromEnv, harnessCluster.err)
	}
	return slices.Clone(harnessCluster.addrs)
}

// memcachedServers returns n (1 to 4) distinct memcached addresses shared by
// all tests of this binary: the first n of CACHEKIT_TEST_MEMCACHED_ADDRS
// (comma-separated; fewer than n is treated as no servers), or containers of
// CACHEKIT_TEST_MEMCACHED_IMAGE (default memcached:1.6), started as needed.
// memcachedServers(t, 1)[0] == memcachedServers(t, 2)[0]. Without servers it
// skips the test, or fails it when CI is set.
func memcachedServers(t testing.TB, n int) []string {
	t.Helper()
	if n < 1 || n > harnessMaxMemcachedServers {
		t.Fatalf("memcachedServers: n = %d, want 1 to %d", n, harnessMaxMemcachedServers)
	}
	m := &harnessMemcached
	m.mu.Lock()
	defer m.mu.Unlock()

	if env := os.Getenv(harnessEnvMemcachedAddrs); strings.TrimSpace(env) != "" {
		addrs := harnessSplitAddrs(env)
		if len(addrs) < n {
			harnessUnavailable(t, fmt.Sprintf("%d memcached servers", n), true,
				fmt.Errorf("%s lists %d address(es) (%q), this test needs %d", harnessEnvMemcachedAddrs, len(addrs), env, n))
		}
		if !m.envChecked {
			m.envChecked = true
			m.envErr = harnessWithTimeout(30*time.Second, func(ctx context.Context) error {
				for _, addr := range addrs {
					if err := harnessPollReady(ctx, addr, harnessMemcachedVersion); err != nil {
						return err
					}
				}
				return nil
			})
		}
		if m.envErr != nil {
			harnessUnavailable(t, "memcached", true, m.envErr)
		}
		return addrs[:n]
	}

	if m.err == nil && len(m.addrs) < n {
		added, err := harnessStartMemcached(n - len(m.addrs))
		m.addrs = append(m.addrs, added...)
		m.err = err
	}
	if len(m.addrs) < n {
		harnessUnavailable(t, fmt.Sprintf("%d memcached server(s)", n), false, m.err)
	}
	return slices.Clone(m.addrs[:n])
}

var (
	harnessRedis struct {
		once    sync.Once
		addr    string
		fromEnv bool
		err     error
	}
	harnessCluster struct {
		once    sync.Once
		addrs   []string
		fromEnv bool
		err     error
	}
	harnessMemcached struct {
		mu         sync.Mutex
		addrs      []string // started so far
		err        error    // a start failed: don't try again
		envChecked bool
		envErr     error
	}
)

// harnessUnavailable skips t, or fails it when CI is set, saying how to run it.
func harnessUnavailable(t testing.TB, what string, fromEnv bool, err error) {
	t.Helper()
	var msg string
	if fromEnv {
		msg = fmt.Sprintf("%s from the environment is not usable: %v\n"+
			"Fix or unset the address variables (CACHEKIT_TEST_REDIS_ADDR, CACHEKIT_TEST_REDIS_CLUSTER_ADDRS, "+
			"CACHEKIT_TEST_MEMCACHED_ADDRS) to use Docker instead.", what, err)
	} else {
		msg = fmt.Sprintf("%s is not available: %v\n%s", what, err, harnessHowToRun)
	}
	if os.Getenv(harnessEnvCI) != "" {
		t.Fatalf("CI is set, so a missing server fails the test instead of skipping it.\n%s", msg)
	}
	t.Skip(msg)
}

const harnessHowToRun = `To run the integration tests, either
  - make a Docker engine available (DOCKER_HOST or /var/run/docker.sock). The harness starts
    CACHEKIT_TEST_REDIS_IMAGE (default ` + harnessDefaultRedisImage + `) and CACHEKIT_TEST_MEMCACHED_IMAGE (default ` + harnessDefaultMemcachedImage + `)
    with testcontainers-go (the Redis Cluster uses host networking). Where images can't be pulled,
    build local ones from Debian's redis-server/memcached with 'make test-images' and set
    CACHEKIT_TEST_REDIS_IMAGE=` + harnessLocalRedisImage + ` CACHEKIT_TEST_MEMCACHED_IMAGE=` + harnessLocalMemcachedImage + `
    (and TESTCONTAINERS_RYUK_DISABLED=true where the Ryuk image can't be pulled); or
  - point the tests at running servers:
    CACHEKIT_TEST_REDIS_ADDR=127.0.0.1:6379
    CACHEKIT_TEST_REDIS_CLUSTER_ADDRS=127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002
    CACHEKIT_TEST_MEMCACHED_ADDRS=127.0.0.1:11211,127.0.0.1:11212
    ('make compose-up' starts Redis on 6379 and memcached on 11211).
With CI set, a missing server fails the test instead of skipping it.`

func harnessSplitAddrs(s string) []string {
	var addrs []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

func harnessWithTimeout(d time.Duration, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return f(ctx)
}

// --- Talking to the servers ----------------------------------------------

// harnessRESP sends one command to a Redis server on a new connection and
// returns the reply: the text of a simple string or integer, the body of a
// bulk string, or an error for an error reply.
func harnessRESP(ctx context.Context, addr string, args ...string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = conn.SetDeadline(deadline)

	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return "", err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read reply: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("redis %s: %s", addr, line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("unexpected reply %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", fmt.Errorf("read reply: %w", err)
		}
		return string(buf[:n]), nil
	default:
		return "", fmt.Errorf("unexpected reply %q", line)
	}
}

func harnessRedisPing(ctx context.Context, addr string) error {
	reply, err := harnessRESP(ctx, addr, "PING")
	if err != nil {
		return err
	}
	if reply != "PONG" {
		return fmt.Errorf("redis %s: PING replied %q", addr, reply)
	}
	return nil
}

// harnessMemcachedVersion sends "version" and expects "VERSION ...".
func harnessMemcachedVersion(ctx context.Context, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "version\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("memcached %s: read reply: %w", addr, err)
	}
	if !strings.HasPrefix(line, "VERSION ") {
		return fmt.Errorf("memcached %s: version replied %q", addr, strings.TrimSpace(line))
	}
	return nil
}

// harnessPollReady calls check until it succeeds or ctx ends.
func harnessPollReady(ctx context.Context, addr string, check func(context.Context, string) error) error {
	for {
		err := check(ctx, addr)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w", addr, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// harnessReady is a testcontainers wait strategy: the container's port
// answers check (a real PING or version reply, so the port is open too).
type harnessReady struct {
	port    string // container port, "6379/tcp"
	check   func(ctx context.Context, addr string) error
	timeout time.Duration
}

func (s *harnessReady) Timeout() *time.Duration { return &s.timeout }

func (s *harnessReady) String() string { return "a reply on port " + s.port }

func (s *harnessReady) WaitUntilReady(ctx context.Context, target wait.StrategyTarget) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var last error
	for {
		addr, err := harnessTargetAddr(ctx, target, s.port)
		if err == nil {
			if err = s.check(ctx, addr); err == nil {
				return nil
			}
		}
		last = err
		if state, serr := target.State(ctx); serr == nil && !state.Running {
			return fmt.Errorf("container is %s (exit code %d): %w", state.Status, state.ExitCode, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no reply on %s within %s: %w", s.port, s.timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type harnessAddrTarget interface {
	Host(context.Context) (string, error)
	MappedPort(context.Context, string) (network.Port, error)
}

// harnessTargetAddr is "host:port" for a container port, as the test process
// reaches it: 127.0.0.1 when the engine is local (see harnessDockerIsLocal),
// else what testcontainers says ("localhost" made 127.0.0.1, so that clients
// don't try ::1).
func harnessTargetAddr(ctx context.Context, c harnessAddrTarget, port string) (string, error) {
	host := "127.0.0.1"
	if !harnessDocker.local {
		var err error
		if host, err = c.Host(ctx); err != nil {
			return "", err
		}
		if host == "localhost" {
			host = "127.0.0.1"
		}
	}
	p, err := c.MappedPort(ctx, port)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(int(p.Num()))), nil
}

// --- Docker ----------------------------------------------------------------

var harnessDocker struct {
	once  sync.Once
	cli   *testcontainers.DockerClient
	local bool // the engine runs on this host: publish ports on 127.0.0.1 only
	err   error
}

// harnessDockerConnected is the client once connected, for TestMain and the
// signal handler, which may run while harnessDocker.once is in progress.
var harnessDockerConnected atomic.Pointer[testcontainers.DockerClient]

// harnessDockerClient connects to the Docker engine once, and removes
// containers that earlier runs of this harness left behind.
func harnessDockerClient() (*testcontainers.DockerClient, error) {
	harnessDocker.once.Do(func() {
		harnessDocker.err = harnessCatchPanic(func() error {
			ctx, cancel := context.WithTimeout(context.Background(), harnessDockerTimeout)
			defer cancel()
			// testcontainers falls back from a DOCKER_HOST that doesn't
			// answer to the default socket; the harness takes DOCKER_HOST at
			// its word instead.
			if host := os.Getenv("DOCKER_HOST"); host != "" {
				plain, err := client.New(client.FromEnv)
				if err == nil {
					_, err = plain.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
					_ = plain.Close()
				}
				if err != nil {
					return fmt.Errorf("no Docker engine at DOCKER_HOST=%s: %w", host, err)
				}
			}
			cli, err := testcontainers.NewDockerClientWithOpts(ctx)
			if err != nil {
				return fmt.Errorf("no Docker engine: %w", err)
			}
			if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
				return fmt.Errorf("no Docker engine: %w", err)
			}
			harnessDocker.cli = cli
			harnessDocker.local = harnessDockerIsLocal(cli.DaemonHost())
			harnessReapStale(ctx, cli)
			harnessDockerConnected.Store(cli)
			return nil
		})
	})
	return harnessDocker.cli, harnessDocker.err
}

// harnessDockerIsLocal reports whether the engine is reached through a unix
// socket (or a loopback TCP address), taken to mean that its published ports
// are reachable on 127.0.0.1 (a laptop, Docker Desktop, a CI machine running
// its own engine). The harness then publishes ports on 127.0.0.1 only and
// connects there, rather than to a bridge gateway address that testcontainers
// picks when the tests themselves run in a container. Where that is wrong (tests
// in a container talking to the host's engine through a mounted socket), set
// TESTCONTAINERS_HOST_OVERRIDE to the host's address.
func harnessDockerIsLocal(daemonHost string) bool {
	if os.Getenv("TESTCONTAINERS_HOST_OVERRIDE") != "" {
		return false
	}
	scheme, rest, _ := strings.Cut(daemonHost, "://")
	switch scheme {
	case "unix", "npipe":
		return true
	case "tcp", "http", "https":
		host, _, err := net.SplitHostPort(rest)
		if err != nil {
			host = rest
		}
		if host == "localhost" {
			return true
		}
		ip, err := netip.ParseAddr(host)
		return err == nil && ip.IsLoopback()
	}
	return false
}

// harnessReapStale removes containers of this harness whose test process, on
// this host, no longer runs (a binary killed by a timeout or a signal).
func harnessReapStale(ctx context.Context, cli *testcontainers.DockerClient) {
	host, _ := os.Hostname()
	list, err := cli.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", harnessLabel+"=1", harnessLabelHost+"="+host),
	})
	if err != nil {
		return
	}
	for _, c := range list.Items {
		pid, err := strconv.Atoi(c.Labels[harnessLabelPID])
		if err != nil || pid == os.Getpid() || harnessProcessAlive(pid) {
			continue
		}
		if _, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err == nil {
			fmt.Fprintf(os.Stderr, "integration_test: removed container %.12s left behind by test process %d\n", c.ID, pid)
		}
	}
}

func harnessProcessAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	if err == nil {
		return true
	}
	if _, perr := os.Stat("/proc/self"); perr != nil {
		return true // no /proc: can't tell, so leave it alone
	}
	return false
}

// harnessEnsureImage makes sure image is present, pulling it (once, bounded
// in time) if not. The result is remembered per image.
func harnessEnsureImage(cli *testcontainers.DockerClient, image string) error {
	v, _ := harnessImages.LoadOrStore(image, &harnessImageOnce{})
	o := v.(*harnessImageOnce)
	o.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), harnessPullTimeout)
		defer cancel()
		if _, err := cli.ImageInspect(ctx, image); err == nil {
			return
		}
		resp, err := cli.ImagePull(ctx, image, client.ImagePullOptions{})
		if err == nil {
			err = resp.Wait(ctx)
			_ = resp.Close()
		}
		if err != nil {
			o.err = fmt.Errorf("image %s is not present and could not be pulled: %w", image, err)
		}
	})
	return o.err
}

type harnessImageOnce struct {
	once sync.Once
	err  error
}

var harnessImages sync.Map // image name -> *harnessImageOnce

// harnessContainers is everything the harness started; TestMain terminates
// them all after m.Run.
var harnessContainers struct {
	mu   sync.Mutex
	list []testcontainers.Container
}

func harnessTrack(c testcontainers.Container) {
	harnessContainers.mu.Lock()
	defer harnessContainers.mu.Unlock()
	harnessContainers.list = append(harnessContainers.list, c)
}

// harnessLife guards starting against stopping: once harnessStopAll has
// begun, no container starts, and it waits for starts in flight.
var harnessLife struct {
	mu       sync.Mutex
	stopping bool
	inflight sync.WaitGroup
}

var errHarnessStopping = errors.New("the test binary is shutting down")

// harnessBeginStart registers a container start; it fails once stopping.
func harnessBeginStart() (done func(), err error) {
	harnessLife.mu.Lock()
	defer harnessLife.mu.Unlock()
	if harnessLife.stopping {
		return nil, errHarnessStopping
	}
	harnessLife.inflight.Add(1)
	return harnessLife.inflight.Done, nil
}

// harnessStopAll terminates (stops and removes) every container the harness
// started, concurrently, then force-removes anything else labelled with this
// process, and reports an error only if some container of this process is
// still there afterwards (or, without a Docker client, if a terminate failed).
// Starts in flight are waited for (up to a minute); later starts fail.
func harnessStopAll() error {
	harnessLife.mu.Lock()
	harnessLife.stopping = true
	harnessLife.mu.Unlock()
	idle := make(chan struct{})
	go func() { harnessLife.inflight.Wait(); close(idle) }()
	select {
	case <-idle:
	case <-time.After(harnessStopTimeout):
	}

	harnessContainers.mu.Lock()
	list := harnessContainers.list
	harnessContainers.list = nil
	harnessContainers.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), harnessStopTimeout)
	defer cancel()
	errs := make([]error, len(list))
	var wg sync.WaitGroup
	for i, c := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = harnessTerminate(ctx, c)
		}()
	}
	wg.Wait()
	cli := harnessDockerConnected.Load()
	if cli == nil {
		return errors.Join(errs...)
	}
	// Also whatever a start created and failed to hand back.
	pid := strconv.Itoa(os.Getpid())
	sweepErr := harnessRemoveLabelled(ctx, cli, pid)
	left, err := harnessListLabelled(ctx, cli, pid)
	if err != nil {
		return errors.Join(append(errs, sweepErr, err)...)
	}
	if len(left) > 0 {
		return errors.Join(append(errs, sweepErr, fmt.Errorf("containers left behind: %v", left))...)
	}
	return nil
}

func harnessListLabelled(ctx context.Context, cli *testcontainers.DockerClient, pid string) ([]string, error) {
	host, _ := os.Hostname()
	list, err := cli.ContainerList(ctx, client.ContainerListOptions{
		All: true,
		Filters: make(client.Filters).Add("label",
			harnessLabel+"=1", harnessLabelHost+"="+host, harnessLabelPID+"="+pid),
	})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var ids []string
	for _, c := range list.Items {
		ids = append(ids, c.ID)
	}
	return ids, nil
}

// harnessRemoveLabelled force-removes this host's harness containers of
// test process pid.
func harnessRemoveLabelled(ctx context.Context, cli *testcontainers.DockerClient, pid string) error {
	ids, err := harnessListLabelled(ctx, cli, pid)
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		if _, err := cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove container %.12s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

func harnessTerminate(ctx context.Context, c testcontainers.Container) error {
	return harnessCatchPanic(func() error {
		if err := c.Terminate(ctx, testcontainers.StopTimeout(2*time.Second)); err != nil {
			return fmt.Errorf("terminate container %.12s: %w", c.GetContainerID(), err)
		}
		return nil
	})
}

func harnessCatchPanic(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return f()
}

func harnessLogger() tclog.Logger {
	if testing.Verbose() {
		return tclog.Default()
	}
	return tclog.NewNoopLogger()
}

// harnessRun starts one container of image and waits until ready says so.
// A container that doesn't become ready is removed, and the error carries
// the end of its log.
func harnessRun(image string, ready wait.Strategy, opts ...testcontainers.ContainerCustomizer) (*testcontainers.DockerContainer, error) {
	done, err := harnessBeginStart()
	if err != nil {
		return nil, err
	}
	defer done()
	cli, err := harnessDockerClient()
	if err != nil {
		return nil, err
	}
	if err := harnessEnsureImage(cli, image); err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	all := []testcontainers.ContainerCustomizer{
		testcontainers.WithLogger(harnessLogger()),
		testcontainers.WithLabels(map[string]string{
			harnessLabel:     "1",
			harnessLabelPID:  strconv.Itoa(os.Getpid()),
			harnessLabelHost: host,
		}),
		testcontainers.WithWaitStrategyAndDeadline(harnessStartupTimeout+10*time.Second, ready),
	}
	all = append(all, opts...)

	ctx, cancel := context.WithTimeout(context.Background(), harnessStartupTimeout+30*time.Second)
	defer cancel()
	var c *testcontainers.DockerContainer
	err = harnessCatchPanic(func() error {
		var err error
		c, err = testcontainers.Run(ctx, image, all...)
		return err
	})
	if err != nil {
		if c != nil {
			if logs := harnessTailLogs(c); logs != "" {
				err = fmt.Errorf("%w\ncontainer log:\n%s", err, logs)
			}
			if terr := harnessTerminate(context.Background(), c); terr != nil {
				harnessTrack(c) // try again in TestMain
			}
		}
		return nil, fmt.Errorf("start %s: %w", image, err)
	}
	harnessTrack(c)
	return c, nil
}

func harnessTailLogs(c *testcontainers.DockerContainer) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out string
	_ = harnessCatchPanic(func() error {
		rc, err := c.Logs(ctx)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, _ := io.ReadAll(io.LimitReader(rc, 1<<20))
		out = strings.TrimSpace(string(b))
		return nil
	})
	if len(out) > 2000 {
		out = "..." + out[len(out)-2000:]
	}
	return out
}

// harnessPublishLoopback publishes port on 127.0.0.1 only, when the engine is
// on this host (otherwise testcontainers' default, all interfaces).
func harnessPublishLoopback(port string) testcontainers.CustomizeRequestOption {
	return testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
		if !harnessDocker.local {
			return
		}
		p, err := network.ParsePort(port)
		if err != nil {
			return
		}
		if hc.PortBindings == nil {
			hc.PortBindings = network.PortMap{}
		}
		hc.PortBindings[p] = []network.PortBinding{{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: "0"}}
	})
}

func harnessRedisImage() string {
	if img := strings.TrimSpace(os.Getenv(harnessEnvRedisImage)); img != "" {
		return img
	}
	return harnessDefaultRedisImage
}

func harnessMemcachedImage() string {
	if img := strings.TrimSpace(os.Getenv(harnessEnvMemcachedImage)); img != "" {
		return img
	}
	return harnessDefaultMemcachedImage
}

// --- Redis -----------------------------------------------------------------

func harnessStartRedis() (string, error) {
	const port = "6379/tcp"
	c, err := harnessRun(harnessRedisImage(),
		&harnessReady{port: port, check: harnessRedisPing, timeout: harnessStartupTimeout},
		testcontainers.WithExposedPorts(port),
		harnessPublishLoopback(port),
		testcontainers.WithCmd("redis-server", "--port", "6379", "--save", "", "--appendonly", "no", "--protected-mode", "no"),
	)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return harnessTargetAddr(ctx, c, port)
}

// harnessStartRedisCluster starts three cluster-enabled Redis containers on
// host networking, at free 127.0.0.1 ports, and joins them into a cluster.
// A clash for a port (taken between choosing and binding) gets a retry.
func harnessStartRedisCluster() ([]string, error) {
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		var addrs []string
		if addrs, err = harnessTryStartRedisCluster(); err == nil {
			return addrs, nil
		}
		if _, derr := harnessDockerClient(); derr != nil {
			return nil, err
		}
		if errors.Is(err, errHarnessNoRetry) {
			return nil, err
		}
	}
	return nil, err
}

var errHarnessNoRetry = errors.New("not retried")

func harnessTryStartRedisCluster() ([]string, error) {
	if _, err := harnessDockerClient(); err != nil {
		return nil, err
	}
	if err := harnessEnsureImage(harnessDocker.cli, harnessRedisImage()); err != nil {
		return nil, fmt.Errorf("%w (%w)", err, errHarnessNoRetry)
	}
	ports, err := harnessFreePorts(2 * harnessClusterMasters)
	if err != nil {
		return nil, err
	}
	n := harnessClusterMasters
	addrs := make([]string, n)
	containers := make([]*testcontainers.DockerContainer, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		port, busPort := ports[i], ports[n+i]
		addrs[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := strconv.Itoa(port)
			containers[i], errs[i] = harnessRun(harnessRedisImage(),
				&harnessReady{port: p + "/tcp", check: harnessRedisPing, timeout: harnessStartupTimeout},
				testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
					hc.NetworkMode = "host"
					hc.PortBindings = nil
				}),
				testcontainers.WithCmd("redis-server",
					"--port", p,
					"--bind", "127.0.0.1",
					"--protected-mode", "no",
					"--cluster-enabled", "yes",
					"--cluster-port", strconv.Itoa(busPort),
					"--cluster-config-file", "nodes-"+p+".conf",
					"--cluster-node-timeout", "5000",
					"--cluster-announce-ip", "127.0.0.1",
					"--save", "", "--appendonly", "no"),
			)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		harnessRemove(containers)
		return nil, err
	}

	ctx, cancel := context.WithTimeout(context.Background(), harnessClusterTimeout)
	defer cancel()
	if err := harnessCreateCluster(ctx, addrs, ports[n:]); err != nil {
		harnessRemove(containers)
		return nil, fmt.Errorf("create Redis Cluster on %v: %w", addrs, err)
	}
	return addrs, nil
}

// harnessRemove terminates containers started for an attempt that failed.
func harnessRemove(cs []*testcontainers.DockerContainer) {
	removed := map[string]bool{}
	for _, c := range cs {
		if c != nil && harnessTerminate(context.Background(), c) == nil {
			removed[c.GetContainerID()] = true
		}
	}
	harnessContainers.mu.Lock()
	defer harnessContainers.mu.Unlock()
	harnessContainers.list = slices.DeleteFunc(harnessContainers.list, func(c testcontainers.Container) bool {
		return removed[c.GetContainerID()]
	})
}

// harnessFreePorts returns n distinct free TCP ports on 127.0.0.1.
func harnessFreePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// harnessCreateCluster turns empty cluster-enabled nodes into one cluster, as
// redis-cli --cluster create does: distinct config epochs, a contiguous slot
// range per node, CLUSTER MEET, then cluster_state:ok everywhere.
func harnessCreateCluster(ctx context.Context, addrs []string, busPorts []int) error {
	const slots = 16384
	n := len(addrs)
	for i, addr := range addrs {
		lo, hi := i*slots/n, (i+1)*slots/n-1
		if _, err := harnessRESP(ctx, addr, "CLUSTER", "SET-CONFIG-EPOCH", strconv.Itoa(i+1)); err != nil {
			return err
		}
		if _, err := harnessRESP(ctx, addr, "CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(lo), strconv.Itoa(hi)); err != nil {
			return err
		}
	}
	for i := 1; i < n; i++ {
		host, port, _ := net.SplitHostPort(addrs[i])
		if _, err := harnessRESP(ctx, addrs[0], "CLUSTER", "MEET", host, port, strconv.Itoa(busPorts[i])); err != nil {
			return err
		}
	}
	return harnessWaitClusterOK(ctx, addrs, n)
}

// harnessWaitClusterOK waits until every node reports cluster_state:ok, all
// slots ok, and (if known > 0) that many known nodes, and at least three
// masters (nodes that own slots).
func harnessWaitClusterOK(ctx context.Context, addrs []string, known int) error {
	var last error
	for {
		last = nil
		for _, addr := range addrs {
			info, err := harnessRESP(ctx, addr, "CLUSTER", "INFO")
			if err != nil {
				last = err
				break
			}
			fields := harnessInfoFields(info)
			switch {
			case fields["cluster_state"] != "ok":
				last = fmt.Errorf("%s: cluster_state:%s", addr, fields["cluster_state"])
			case fields["cluster_slots_ok"] != "16384":
				last = fmt.Errorf("%s: cluster_slots_ok:%s", addr, fields["cluster_slots_ok"])
			case known > 0 && fields["cluster_known_nodes"] != strconv.Itoa(known):
				last = fmt.Errorf("%s: cluster_known_nodes:%s, want %d", addr, fields["cluster_known_nodes"], known)
			default:
				if size, _ := strconv.Atoi(fields["cluster_size"]); size < harnessClusterMasters {
					last = fmt.Errorf("%s: cluster_size:%s, want at least %d masters", addr, fields["cluster_size"], harnessClusterMasters)
				}
			}
			if last != nil {
				break
			}
		}
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not ok: %w", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// harnessInfoFields parses "key:value" lines of an INFO-style reply.
func harnessInfoFields(info string) map[string]string {
	fields := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			fields[k] = v
		}
	}
	return fields
}

// --- Memcached ---------------------------------------------------------------

// harnessStartMemcached starts n memcached containers concurrently and
// returns the addresses of those that started, with the first error.
//
// "-u nobody" is passed because memcached refuses to run as root without -u;
// it reads -u only when started as root, so it does nothing in the official
// image (which runs as user memcache) or in cachekit-test/memcached:local
// (USER 65534:65534), and makes root-running images work.
func harnessStartMemcached(n int) ([]string, error) {
	const port = "11211/tcp"
	addrs := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := harnessRun(harnessMemcachedImage(),
				&harnessReady{port: port, check: harnessMemcachedVersion, timeout: harnessStartupTimeout},
				testcontainers.WithExposedPorts(port),
				harnessPublishLoopback(port),
				testcontainers.WithCmd("memcached", "-p", "11211", "-m", "64", "-U", "0", "-u", "nobody"),
			)
			if err != nil {
				errs[i] = err
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			addrs[i], errs[i] = harnessTargetAddr(ctx, c, port)
		}()
	}
	wg.Wait()
	var ok []string
	for i := range n {
		if errs[i] == nil {
			ok = append(ok, addrs[i])
		}
	}
	return ok, errors.Join(errs...)
}
