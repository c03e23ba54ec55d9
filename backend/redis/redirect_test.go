package redis

import (
	"errors"
	"fmt"
	"io"
	"testing"

	goredis "github.com/redis/go-redis/v9"
)

// serverErr is a reply error as go-redis reports it (goredis.Error).
type serverErr string

func (e serverErr) Error() string { return string(e) }
func (serverErr) RedisError()     {}

var _ goredis.Error = serverErr("")

func TestRedirected(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{serverErr("MOVED 3999 127.0.0.1:6381"), true},
		{serverErr("ASK 3999 127.0.0.1:6381"), true},
		{serverErr("TRYAGAIN Multiple keys request during rehashing of slot"), true},
		{fmt.Errorf("wrapped: %w", serverErr("TRYAGAIN x")), true},
		{serverErr("ERR wrong number of arguments"), false},
		{serverErr("CLUSTERDOWN The cluster is down"), false},
		{errors.New("MOVED 1 a:1"), false}, // not a server reply
		{io.EOF, false},
		{nil, false},
	} {
		if got := redirected(tc.err); got != tc.want {
			t.Errorf("redirected(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
