// Package testserver runs real Redis and Memcached servers as processes on
// 127.0.0.1 for fault-injection tests, which need what a container harness
// can't give cheaply: freezing a server (SIGSTOP), killing it, and starting it
// again on the same port.
//
// The binaries come from PATH (Debian's redis-server and memcached), or from
// CACHEKIT_TEST_REDIS_SERVER_BIN / CACHEKIT_TEST_MEMCACHED_BIN. When a binary
// is missing the test is skipped with a line naming what to install, except
// under CI (the CI environment variable is set), where it fails: a CI run must
// not pass by skipping its fault tests.
package testserver

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Report, when set (by a test binary's TestMain, before tests run), is called
// once per Start: with a nil error when the server started, or with the
// reason the test is skipped (or, under CI, failed). The integration suite
// uses it to list the fault tests' servers in its summary.
var Report func(t testing.TB, kind string, err error)

func report(t testing.TB, kind string, err error) {
	if Report != nil {
		Report(t, kind, err)
	}
}

// Server is one server process that the test owns.
type Server struct {
	t    testing.TB
	kind string // "redis" or "memcached"
	bin  string
	args []string // with the port filled in
	port int
	dir  string
	tls  *tls.Config // a TLS server's client configuration; nil: plain TCP

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	frozen bool
}

// StartRedis starts redis-server on a free port of 127.0.0.1 with no
// persistence, plus extra arguments (e.g. "--maxmemory", "10mb"). t's cleanup
// stops it.
func StartRedis(t testing.TB, extra ...string) *Server {
	t.Helper()
	bin := binary(t, "redis", "CACHEKIT_TEST_REDIS_SERVER_BIN", "redis-server", "redis-server (Debian package redis-server)")
	dir := t.TempDir()
	return start(t, "redis", bin, dir, func(port int) []string {
		return append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--protected-mode", "no",
			"--save", "", "--appendonly", "no", "--dir", dir}, extra...)
	})
}

// StartMemcached starts memcached on a free port of 127.0.0.1 with 64 MiB of
// memory and room for 4096 connections (gomemcache opens one per concurrent
// call), plus extra arguments. t's cleanup stops it.
func StartMemcached(t testing.TB, extra ...string) *Server {
	t.Helper()
	bin := binary(t, "memcached", "CACHEKIT_TEST_MEMCACHED_BIN", "memcached", "memcached (Debian package memcached)")
	return start(t, "memcached", bin, t.TempDir(), func(port int) []string {
		args := []string{"-l", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "0", "-m", "64", "-c", "4096"}
		if os.Geteuid() == 0 {
			args = append(args, "-u", "nobody")
		}
		return append(args, extra...)
	})
}

func binary(t testing.TB, kind, env, name, what string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/bin", "/usr/sbin", "/usr/local/bin"} {
		if p := filepath.Join(dir, name); isExec(p) {
			return p
		}
	}
	msg := fmt.Sprintf("fault-injection test needs %s on PATH (or %s)", what, env)
	report(t, kind, fmt.Errorf("%s not found on PATH; to run: install it, or set %s", name, env))
	if os.Getenv("CI") != "" {
		t.Fatal(msg + "; CI is set, so this is a failure, not a skip")
	}
	t.Skip(msg)
	return ""
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// StartMemcachedTLS starts memcached as StartMemcached does, serving TLS
// only (-Z) with a certificate for 127.0.0.1 made for it, and returns the
// TLS configuration a client needs to trust it.
func StartMemcachedTLS(t testing.TB, extra ...string) (*Server, *tls.Config) {
	t.Helper()
	dir := t.TempDir()
	cfg, err := selfSigned(dir)
	if err != nil {
		t.Fatalf("testserver: making a certificate: %v", err)
	}
	extra = append([]string{"-Z", "-o", "ssl_chain_cert=" + filepath.Join(dir, "cert.pem") + ",ssl_key=" + filepath.Join(dir, "key.pem")}, extra...)
	bin := binary(t, "memcached", "CACHEKIT_TEST_MEMCACHED_BIN", "memcached", "memcached (Debian package memcached)")
	s := startTLS(t, "memcached", bin, dir, cfg, func(port int) []string {
		args := []string{"-l", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "0", "-m", "64", "-c", "4096"}
		if os.Geteuid() == 0 {
			args = append(args, "-u", "nobody")
		}
		return append(args, extra...)
	})
	return s, cfg.Clone()
}

// selfSigned writes cert.pem and key.pem for 127.0.0.1 into dir (readable
// by the server's user) and returns a client configuration that trusts it.
func selfSigned(dir string) (*tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	// The server may run as nobody: the key must be readable by it (the
	// directory is the test's own, and removed afterwards).
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o644); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}, nil
}

func start(t testing.TB, kind, bin, dir string, args func(port int) []string) *Server {
	t.Helper()
	return startTLS(t, kind, bin, dir, nil, args)
}

func startTLS(t testing.TB, kind, bin, dir string, cfg *tls.Config, args func(port int) []string) *Server {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		s := &Server{t: t, kind: kind, bin: bin, args: args(port), port: port, dir: dir, tls: cfg}
		if err := s.launch(); err != nil {
			lastErr = err
			continue
		}
		t.Cleanup(s.stop)
		report(t, kind, nil)
		return s
	}
	report(t, kind, lastErr)
	t.Fatalf("testserver: could not start %s: %v", kind, lastErr)
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// launch starts the process and waits until it answers.
func (s *Server) launch() error {
	cmd := exec.Command(s.bin, s.args...)
	logf, err := os.Create(filepath.Join(s.dir, fmt.Sprintf("%s-%d.log", s.kind, s.port)))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited, s.frozen = cmd, exited, false
	s.mu.Unlock()

	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			out, _ := os.ReadFile(logf.Name())
			return fmt.Errorf("%s exited at start-up: %s", s.kind, strings.TrimSpace(string(out)))
		default:
		}
		if s.ready() == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.signalAndWait(syscall.SIGKILL)
	return fmt.Errorf("%s on port %d did not answer within 15s", s.kind, s.port)
}

// ready sends one PING (Redis) or version (Memcached) and checks the reply.
func (s *Server) ready() error {
	var c net.Conn
	var err error
	if s.tls != nil {
		c, err = tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", s.Addr(), s.tls)
	} else {
		c, err = net.DialTimeout("tcp", s.Addr(), time.Second)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	req, want := "PING\r\n", "+PONG"
	if s.kind == "memcached" {
		req, want = "version\r\n", "VERSION"
	}
	if _, err := c.Write([]byte(req)); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, want) {
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// PID returns the current process's id (it changes with Restart).
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Pid
}

// Freeze stops the process with SIGSTOP: connections stay open, nothing is
// answered, as a server stuck in a long fork or swap storm. It returns once
// every thread of the process is stopped (SIGSTOP is asynchronous: a worker
// thread can still answer a request right after kill(2) returns).
func (s *Server) Freeze() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		s.t.Fatalf("testserver: freeze %s: %v", s.kind, err)
	}
	s.frozen = true
	if err := waitStopped(s.cmd.Process.Pid, 10*time.Second); err != nil {
		s.t.Fatalf("testserver: freeze %s: %v", s.kind, err)
	}
}

// waitStopped waits until every thread of process pid is in the stopped
// state, as Linux's /proc shows it. Where /proc is missing it waits a moment.
func waitStopped(pid int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
		if err != nil || len(tasks) == 0 {
			time.Sleep(100 * time.Millisecond)
			return nil
		}
		stopped := true
		for _, f := range tasks {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			// The state letter follows the command name in parentheses.
			st := string(b)
			if i := strings.LastIndexByte(st, ')'); i >= 0 && i+2 < len(st) && st[i+2] != 'T' && st[i+2] != 't' {
				stopped = false
				break
			}
		}
		if stopped {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d not stopped %v after SIGSTOP", pid, limit)
		}
		time.Sleep(time.Millisecond)
	}
}

// Thaw resumes a frozen process with SIGCONT.
func (s *Server) Thaw() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		s.t.Fatalf("testserver: thaw %s: %v", s.kind, err)
	}
	s.frozen = false
}

// Kill kills the process with SIGKILL and waits until it is gone and its port
// refuses connections.
func (s *Server) Kill() {
	s.t.Helper()
	s.signalAndWait(syscall.SIGKILL)
}

// Restart starts the server again on the same port, after Kill, and waits
// until it answers. Its data is gone (no persistence).
func (s *Server) Restart() {
	s.t.Helper()
	var err error
	for i := 0; i < 50; i++ { // the port may linger briefly
		if err = s.launch(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("testserver: restart %s on %s: %v", s.kind, s.Addr(), err)
}

func (s *Server) signalAndWait(sig syscall.Signal) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	select {
	case <-exited:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	_ = cmd.Process.Signal(syscall.SIGCONT) // a frozen process must run to die on SIGTERM
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

func (s *Server) stop() {
	s.signalAndWait(syscall.SIGKILL)
}
