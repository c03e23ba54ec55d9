package testserver

import (
	"bufio"
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func send(addr, req string, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte(req)); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

func checkLifecycle(t *testing.T, s *Server, req, want string) {
	if got, err := send(s.Addr(), req, 5*time.Second); err != nil || !strings.HasPrefix(got, want) {
		t.Fatalf("fresh server: %q, %v", got, err)
	}
	s.Freeze()
	if _, err := send(s.Addr(), req, 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("frozen server: %v, want a timeout", err)
	}
	s.Thaw()
	if got, err := send(s.Addr(), req, 5*time.Second); err != nil || !strings.HasPrefix(got, want) {
		t.Fatalf("thawed server: %q, %v", got, err)
	}
	pid := s.PID()
	s.Kill()
	if _, err := send(s.Addr(), req, 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("killed server: %v, want connection refused", err)
	}
	s.Restart()
	if s.PID() == pid {
		t.Fatal("Restart kept the old PID")
	}
	if got, err := send(s.Addr(), req, 5*time.Second); err != nil || !strings.HasPrefix(got, want) {
		t.Fatalf("restarted server: %q, %v", got, err)
	}
}

func TestRedisLifecycle(t *testing.T) {
	checkLifecycle(t, StartRedis(t), "PING\r\n", "+PONG")
}

func TestMemcachedLifecycle(t *testing.T) {
	checkLifecycle(t, StartMemcached(t), "version\r\n", "VERSION")
}
