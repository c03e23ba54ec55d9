//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package memcached

import (
	"errors"
	"io"
	"syscall"
)

const canCheck = true

// errUnexpectedBytes reports bytes waiting on an idle connection, which the
// protocol never sends: the connection is out of step and unusable.
var errUnexpectedBytes = errors.New("unexpected bytes on an idle connection")

// peekAlive peeks at the socket without blocking: nothing to read means the
// connection is alive; end of file, an error or unsolicited bytes mean it
// is not.
func peekAlive(raw syscall.RawConn) error {
	var (
		buf  [1]byte
		n    int
		serr error
	)
	err := raw.Read(func(fd uintptr) bool {
		n, _, serr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	})
	switch {
	case err != nil:
		return err
	case serr == syscall.EAGAIN || serr == syscall.EWOULDBLOCK || serr == syscall.EINTR:
		return nil
	case serr != nil:
		return serr
	case n == 0:
		return io.EOF
	default:
		return errUnexpectedBytes
	}
}
