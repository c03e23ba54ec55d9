package redis

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
)

// casScript stores ARGV[2] under KEYS[1], with a TTL of ARGV[3] milliseconds
// ("0": none, as SET without PX, which also removes a previous TTL), only
// while the key holds exactly ARGV[4]; with ARGV[1] "n" (a nil old) only
// while the key is absent, as SET NX (whatever type a present key holds). It
// returns 1 when it stored the value, 0 otherwise. It names a single key, so
// it runs on a cluster too.
const casScript = `local v
if ARGV[1] == 'n' then
  if ARGV[3] == '0' then
    v = redis.call('SET', KEYS[1], ARGV[2], 'NX')
  else
    v = redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3], 'NX')
  end
  if v then return 1 end
  return 0
end
if redis.call('GET', KEYS[1]) ~= ARGV[4] then return 0 end
if ARGV[3] == '0' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1`

var _ cachekit.CompareAndSwapper = (*Cache)(nil)

var casSHA = func() string {
	sum := sha1.Sum([]byte(casScript))
	return hex.EncodeToString(sum[:])
}()

// CompareAndSwap stores new under key with ttl (0: no expiry, replacing any
// previous TTL, as Set does) only while key still holds exactly old, and
// reports whether it did; an old of nil means "only while key is absent"
// (SET NX). A non-nil empty old matches a stored empty value, never a
// missing key. It is one EVALSHA of a small Lua script (an EVAL the first
// time a server does not know the script), atomic on the server and on a
// single key, so it works on a cluster. The TTL is sent in milliseconds,
// rounded up. A key holding anything else, or missing when old is not nil,
// is left alone and reports false. Like every write, it is never resent:
// when its reply is lost the error wraps cachekit.ErrUnknownOutcome.
//
// Key, TTL and new are validated as Set validates them; an old longer than
// the value size limit fails like a too-large value (no stored value can
// match it).
func (c *Cache) CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	if err := c.checkWrite(ctx, key, new, ttl); err != nil {
		return false, cachekit.WrapError("CompareAndSwap", key, err)
	}
	if err := c.checkValue(old); err != nil {
		return false, cachekit.WrapError("CompareAndSwap", key, err)
	}
	mode := "v"
	if old == nil {
		mode = "n"
	}
	if c.mayDetach() {
		old, new = bytes.Clone(old), bytes.Clone(new)
	}
	// A nil slice would be sent as an empty string either way; the mode
	// says which it means.
	px := "0"
	if ttl > 0 {
		px = strconv.FormatInt(ttlMillis(ttl), 10)
	}
	k := c.key(key)
	var cmd *goredis.IntCmd
	err := c.runKey(ctx, write, k, func(ctx context.Context) error {
		cmd = goredis.NewIntCmd(ctx, "evalsha", casSHA, 1, k, mode, new, px, old)
		err := c.client.Process(ctx, noRetryInt{cmd})
		if err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			// Refused unrun: send the script itself.
			cmd = goredis.NewIntCmd(ctx, "eval", casScript, 1, k, mode, new, px, old)
			err = c.client.Process(ctx, noRetryInt{cmd})
		}
		return err
	})
	if err != nil {
		return false, cachekit.WrapError("CompareAndSwap", key, c.writeError(ctx, err, max(len(old), len(new))))
	}
	return cmd.Val() == 1, nil
}
