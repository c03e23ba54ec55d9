package redis

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
)

// cadScript deletes KEYS[1] only while it holds exactly ARGV[1]. It names a
// single key, so it runs on a cluster too.
const cadScript = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"

var cadSHA = func() string {
	sum := sha1.Sum([]byte(cadScript))
	return hex.EncodeToString(sum[:])
}()

// CompareAndDelete deletes key only while it still holds exactly old, and
// reports whether it deleted it: one EVALSHA of a small Lua script (an EVAL
// the first time a server does not know the script), atomic on the server.
// A missing key, or one holding anything else, is left alone and reports
// false. Like every write, it is never resent: when its reply is lost the
// error wraps cachekit.ErrUnknownOutcome.
func (c *Cache) CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	if err := c.checkOne(ctx, key); err != nil {
		return false, cachekit.WrapError("CompareAndDelete", key, err)
	}
	if err := c.checkValue(old); err != nil {
		return false, cachekit.WrapError("CompareAndDelete", key, err)
	}
	if c.mayDetach() {
		old = append([]byte{}, old...)
	}
	k := c.key(key)
	var cmd *goredis.IntCmd
	err := c.runKey(ctx, write, k, func(ctx context.Context) error {
		cmd = goredis.NewIntCmd(ctx, "evalsha", cadSHA, 1, k, old)
		err := c.client.Process(ctx, noRetryInt{cmd})
		if err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			// Refused unrun: send the script itself.
			cmd = goredis.NewIntCmd(ctx, "eval", cadScript, 1, k, old)
			err = c.client.Process(ctx, noRetryInt{cmd})
		}
		return err
	})
	if err != nil {
		return false, cachekit.WrapError("CompareAndDelete", key, err)
	}
	return cmd.Val() == 1, nil
}
