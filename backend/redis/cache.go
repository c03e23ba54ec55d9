package redis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
)

// begin checks what every operation checks before its arguments: that the
// cache is open.
func (c *Cache) begin() error {
	if c.closed.Load() {
		return cachekit.ErrClosed
	}
	return nil
}

// checkValue rejects a value over the size limit.
func (c *Cache) checkValue(v []byte) error {
	if len(v) > c.maxValue {
		return fmt.Errorf("%w: %d bytes, limit %d", cachekit.ErrTooLarge, len(v), c.maxValue)
	}
	return nil
}

// checkWrite validates one write: open cache, key, TTL, value size, live
// context, in that order.
func (c *Cache) checkWrite(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := c.begin(); err != nil {
		return err
	}
	if err := cachekit.CheckKey(key); err != nil {
		return err
	}
	if err := cachekit.CheckTTL(ttl); err != nil {
		return err
	}
	if err := c.checkValue(value); err != nil {
		return err
	}
	return ctx.Err()
}

// checkOne validates a single-key call that sends no value.
func (c *Cache) checkOne(ctx context.Context, key string) error {
	if err := c.begin(); err != nil {
		return err
	}
	if err := cachekit.CheckKey(key); err != nil {
		return err
	}
	return ctx.Err()
}

// checkKeys validates a multi-key call; a bad key is reported as an
// *cachekit.Error carrying op and that key, as every backend does.
func (c *Cache) checkKeys(ctx context.Context, op string, keys []string) error {
	if err := c.begin(); err != nil {
		return cachekit.WrapError(op, "", err)
	}
	for _, k := range keys {
		if err := cachekit.CheckKey(k); err != nil {
			return cachekit.WrapError(op, k, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return cachekit.WrapError(op, "", err)
	}
	return nil
}

// mayDetach reports whether a call may be left running after returning (on
// a goroutine of its own, or in the pipeliner's queue), in which case values
// handed to it must be copies the caller cannot change.
func (c *Cache) mayDetach() bool { return !c.ctxAware || c.ap != nil }

// setArgs returns the arguments of SET key value [PX ms] [NX].
func setArgs(key string, value []byte, ttl time.Duration, nx bool) []any {
	args := make([]any, 3, 6)
	args[0], args[1], args[2] = "set", key, value
	if ttl > 0 {
		args = append(args, "px", ttlMillis(ttl))
	}
	if nx {
		args = append(args, "nx")
	}
	return args
}

// ttlMillis is ttl in milliseconds, rounded up.
func ttlMillis(ttl time.Duration) int64 {
	return int64(ttlArg(ttl) / time.Millisecond)
}

// ttlArg rounds ttl up to Redis's millisecond resolution, so that a positive
// TTL never becomes 0 ("no expiry") or shorter than asked.
func ttlArg(ttl time.Duration) time.Duration {
	if r := ttl % time.Millisecond; r != 0 && ttl < 1<<63-1-time.Millisecond {
		ttl += time.Millisecond - r
	}
	return ttl
}

// Get returns the value stored under key, or an error wrapping
// cachekit.ErrNotFound. It is one GET.
func (c *Cache) Get(ctx context.Context, key string) ([]byte, error) {
	if err := c.checkOne(ctx, key); err != nil {
		return nil, cachekit.WrapError("Get", key, err)
	}
	k := c.key(key)
	cmd, sent := c.newGet(ctx, k)
	// do's work, inline: one frame fewer on the stack of a caller parked
	// in the pipeliner (see exchange).
	h := &c.health
	if c.nodes != nil {
		h = c.nodes.forKey(ctx, k)
	}
	if err := c.exchange(ctx, read, h, nil, sent, nil); err != nil {
		if errors.Is(err, goredis.Nil) {
			err = cachekit.ErrNotFound
		}
		return nil, cachekit.WrapError("Get", key, err)
	}
	b, _ := cmd.Bytes() // a copy of the reply
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// GetMany returns the values of the keys that are present. On a standalone
// server it is one MGET; on a cluster the keys are grouped by hash slot into
// one MGET per slot, pipelined per node (never a CROSSSLOT error); on a Ring,
// one GET per key, pipelined per shard.
func (c *Cache) GetMany(ctx context.Context, keys []string) (map[string][]byte, error) {
	if err := c.checkKeys(ctx, "GetMany", keys); err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	// Repeated keys are sent as they are: MGET answers each, and the map
	// keeps one.
	var err error
	switch c.kind {
	case cluster:
		err = c.getManyCluster(ctx, keys, out)
	case ring:
		err = c.getManyRing(ctx, keys, out)
	default:
		err = c.getManySingle(ctx, keys, out)
	}
	if err != nil {
		return nil, cachekit.WrapError("GetMany", "", err)
	}
	return out, nil
}

// collect stores MGET's reply values for keys in out.
func collect(out map[string][]byte, keys []string, vals []any) error {
	if len(vals) != len(keys) {
		return fmt.Errorf("redis: MGET returned %d values for %d keys", len(vals), len(keys))
	}
	for i, v := range vals {
		if s, ok := v.(string); ok {
			out[keys[i]] = []byte(s)
		}
	}
	return nil
}

func (c *Cache) getManySingle(ctx context.Context, keys []string, out map[string][]byte) error {
	args := make([]any, 1+len(keys))
	args[0] = "mget"
	for i, k := range c.wireKeys(keys) {
		args[1+i] = k
	}
	cmd := goredis.NewSliceCmd(ctx, args...)
	if err := c.do(ctx, read, cmd); err != nil {
		return err
	}
	return collect(out, keys, cmd.Val())
}

func (c *Cache) getManyCluster(ctx context.Context, keys []string, out map[string][]byte) error {
	wire := c.wireKeys(keys)
	type batch struct {
		idx []int // into keys and wire
		cmd *goredis.SliceCmd
	}
	groups := bySlot(wire)
	batches := make([]batch, 0, len(groups))
	for _, idx := range groups {
		batches = append(batches, batch{idx: idx})
	}
	err := c.runSlots(ctx, read, func(ctx context.Context, t *slotTarget) error {
		cmds := make([]goredis.Cmder, len(batches))
		for i, b := range batches {
			args := make([]any, 1+len(b.idx))
			args[0] = "mget"
			for j, k := range b.idx {
				args[1+j] = wire[k]
			}
			batches[i].cmd = goredis.NewSliceCmd(ctx, args...)
			cmds[i] = noRetrySlice{batches[i].cmd}
		}
		return c.execRedirected(ctx, t, c.client.Pipeline(), cmds)
	})
	if pipelineRefused(err) {
		// go-redis routes multi-slot commands itself here: one MGET.
		return c.getManySingle(ctx, keys, out)
	}
	if err != nil {
		return err
	}
	for _, b := range batches {
		vals := b.cmd.Val()
		if len(vals) != len(b.idx) {
			return fmt.Errorf("redis: MGET returned %d values for %d keys", len(vals), len(b.idx))
		}
		for j, v := range vals {
			if s, ok := v.(string); ok {
				out[keys[b.idx[j]]] = []byte(s)
			}
		}
	}
	return nil
}

func (c *Cache) getManyRing(ctx context.Context, keys []string, out map[string][]byte) error {
	cmds := make([]*goredis.StringCmd, len(keys))
	wire := c.wireKeys(keys)
	err := c.run(ctx, read, func(ctx context.Context) error {
		pipe := c.client.Pipeline()
		for i, k := range wire {
			cmds[i] = pipe.Get(ctx, k)
		}
		_, err := pipe.Exec(ctx)
		if errors.Is(err, goredis.Nil) {
			err = nil // a miss; real errors are checked per command below
		}
		return err
	})
	if err != nil {
		return err
	}
	for i, cmd := range cmds {
		switch err := cmd.Err(); {
		case err == nil:
			out[keys[i]] = []byte(cmd.Val())
		case !errors.Is(err, goredis.Nil):
			return err
		}
	}
	return nil
}

// Set stores value under key with ttl (0: no expiry), replacing any previous
// value and TTL. It is one SET, with PX in milliseconds rounded up.
func (c *Cache) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := c.checkWrite(ctx, key, value, ttl); err != nil {
		return cachekit.WrapError("Set", key, err)
	}
	if c.mayDetach() {
		value = bytes.Clone(value)
	}
	err := c.do(ctx, write, noRetryStatus{goredis.NewStatusCmd(ctx, setArgs(c.key(key), value, ttl, false)...)})
	return cachekit.WrapError("Set", key, c.writeError(ctx, err, len(value)))
}

// SetMany stores every item with the same ttl: one pipelined round trip of
// SETs (on a cluster, one pipeline per node, run concurrently). It is not
// atomic: after an error some items may be stored. Nothing is stored when
// any key, value or the ttl is invalid.
func (c *Cache) SetMany(ctx context.Context, items map[string][]byte, ttl time.Duration) error {
	if err := c.begin(); err != nil {
		return cachekit.WrapError("SetMany", "", err)
	}
	for k, v := range items {
		if err := cachekit.CheckKey(k); err != nil {
			return cachekit.WrapError("SetMany", k, err)
		}
		if err := c.checkValue(v); err != nil {
			return cachekit.WrapError("SetMany", k, err)
		}
	}
	if err := cachekit.CheckTTL(ttl); err != nil {
		return cachekit.WrapError("SetMany", "", err)
	}
	if err := ctx.Err(); err != nil {
		return cachekit.WrapError("SetMany", "", err)
	}
	if len(items) == 0 {
		return nil
	}
	if c.mayDetach() {
		copied := make(map[string][]byte, len(items))
		for k, v := range items {
			copied[k] = bytes.Clone(v)
		}
		items = copied
	}
	largest := 0
	for _, v := range items {
		largest = max(largest, len(v))
	}
	err := c.runSlots(ctx, write, func(ctx context.Context, t *slotTarget) error {
		cmds := make([]goredis.Cmder, 0, len(items))
		for k, v := range items {
			cmds = append(cmds, noRetryStatus{goredis.NewStatusCmd(ctx, setArgs(c.key(k), v, ttl, false)...)})
		}
		return c.execRedirected(ctx, t, c.client.Pipeline(), cmds)
	})
	return cachekit.WrapError("SetMany", "", c.writeError(ctx, err, largest))
}

// Add stores value under key only if key is absent, atomically: one
// SET NX. If key is present it returns an error wrapping cachekit.ErrExists.
// When the reply is lost it returns an error wrapping
// cachekit.ErrUnknownOutcome (the value may have been stored by this call),
// never ErrExists.
func (c *Cache) Add(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := c.checkWrite(ctx, key, value, ttl); err != nil {
		return cachekit.WrapError("Add", key, err)
	}
	if c.mayDetach() {
		value = bytes.Clone(value)
	}
	cmd := goredis.NewBoolCmd(ctx, setArgs(c.key(key), value, ttl, true)...)
	if err := c.do(ctx, write, noRetryBool{cmd}); err != nil {
		return cachekit.WrapError("Add", key, c.writeError(ctx, err, len(value)))
	}
	if !cmd.Val() {
		return cachekit.WrapError("Add", key, cachekit.ErrExists)
	}
	return nil
}

// delScript deletes its keys one by one and returns how many existed. The
// cluster fallback uses it where go-redis would split a multi-key DEL itself
// (and resend the parts).
const delScript = "local n = 0 for _, k in ipairs(KEYS) do n = n + redis.call('DEL', k) end return n"

// Delete removes keys and reports how many of them existed (a key given
// twice counts once). On a standalone server it is one DEL; on a cluster, one
// DEL per hash slot, pipelined per node. When the reply is lost it returns
// an error wrapping cachekit.ErrUnknownOutcome, never a guessed count.
func (c *Cache) Delete(ctx context.Context, keys ...string) (int, error) {
	if err := c.checkKeys(ctx, "Delete", keys); err != nil {
		return 0, err
	}
	if len(keys) == 0 {
		return 0, nil
	}
	// A key given twice is removed once: DEL counts it once, whether the
	// repeats share a command (same slot) or not (the second finds nothing).
	wire := c.wireKeys(keys)
	var cmds []*goredis.IntCmd
	var sent []goredis.Cmder // cmds as sent, for execRedirected
	del := func(ctx context.Context, keys ...string) {
		args := make([]any, 1+len(keys))
		args[0] = "del"
		for i, k := range keys {
			args[1+i] = k
		}
		cmd := goredis.NewIntCmd(ctx, args...)
		cmds = append(cmds, cmd)
		sent = append(sent, noRetryInt{cmd})
	}
	var err error
	switch c.kind {
	case cluster:
		groups := bySlot(wire)
		slotKeys := make([][]string, 0, len(groups))
		for _, idx := range groups {
			group := make([]string, len(idx))
			for j, i := range idx {
				group[j] = wire[i]
			}
			slotKeys = append(slotKeys, group)
		}
		err = c.runSlots(ctx, write, func(ctx context.Context, t *slotTarget) error {
			cmds, sent = cmds[:0], sent[:0]
			for _, g := range slotKeys {
				del(ctx, g...)
			}
			return c.execRedirected(ctx, t, c.client.Pipeline(), sent)
		})
		if pipelineRefused(err) {
			// The client refuses multi-key DELs in pipelines and would
			// split (and resend) them itself: one script per slot instead.
			err = c.runSlots(ctx, write, func(ctx context.Context, t *slotTarget) error {
				cmds, sent = cmds[:0], sent[:0]
				for _, g := range slotKeys {
					args := make([]any, 3+len(g))
					args[0], args[1], args[2] = "eval", delScript, len(g)
					for i, k := range g {
						args[3+i] = k
					}
					cmd := goredis.NewIntCmd(ctx, args...)
					cmds = append(cmds, cmd)
					sent = append(sent, noRetryInt{cmd})
				}
				return c.execRedirected(ctx, t, c.client.Pipeline(), sent)
			})
		}
	case ring:
		err = c.run(ctx, write, func(ctx context.Context) error {
			cmds, sent = cmds[:0], sent[:0]
			for _, k := range wire {
				del(ctx, k)
			}
			return c.execRedirected(ctx, nil, c.client.Pipeline(), sent)
		})
	default:
		args := make([]any, 1+len(wire))
		args[0] = "del"
		for i, k := range wire {
			args[1+i] = k
		}
		cmd := goredis.NewIntCmd(ctx, args...)
		cmds = append(cmds, cmd)
		err = c.do(ctx, write, noRetryInt{cmd})
	}
	if err != nil {
		return 0, cachekit.WrapError("Delete", "", err)
	}
	n := 0
	for _, cmd := range cmds {
		n += int(cmd.Val())
	}
	return n, nil
}

// Exists reports whether key is present: one EXISTS.
func (c *Cache) Exists(ctx context.Context, key string) (bool, error) {
	if err := c.checkOne(ctx, key); err != nil {
		return false, cachekit.WrapError("Exists", key, err)
	}
	cmd := goredis.NewIntCmd(ctx, "exists", c.key(key))
	if err := c.do(ctx, read, cmd); err != nil {
		return false, cachekit.WrapError("Exists", key, err)
	}
	return cmd.Val() > 0, nil
}

// Increment adds delta to the integer stored under key and returns the new
// value: one INCRBY. A missing key starts at 0 with no expiry; an existing
// key keeps its TTL. A value that is not a base-10 int64, or a result that
// would overflow, fails with an error wrapping cachekit.ErrNotInteger. The
// INCRBY is never resent: when its reply is lost the error wraps
// cachekit.ErrUnknownOutcome (delta was added once, or not at all).
func (c *Cache) Increment(ctx context.Context, key string, delta int64) (int64, error) {
	if err := c.checkOne(ctx, key); err != nil {
		return 0, cachekit.WrapError("Increment", key, err)
	}
	cmd := goredis.NewIntCmd(ctx, "incrby", c.key(key), delta)
	if err := c.do(ctx, write, noRetryInt{cmd}); err != nil {
		return 0, cachekit.WrapError("Increment", key, notInteger(err))
	}
	return cmd.Val(), nil
}

// Expire sets a new TTL on an existing key and reports whether the key
// existed. A positive ttl is one PEXPIRE (milliseconds, rounded up); a ttl
// of 0 removes the expiry with EXISTS and PERSIST in one MULTI/EXEC, since
// PERSIST alone cannot tell a missing key from one without a TTL.
func (c *Cache) Expire(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if err := c.checkOne(ctx, key); err != nil {
		return false, cachekit.WrapError("Expire", key, err)
	}
	if err := cachekit.CheckTTL(ttl); err != nil {
		return false, cachekit.WrapError("Expire", key, err)
	}
	if ttl > 0 {
		cmd := goredis.NewBoolCmd(ctx, "pexpire", c.key(key), ttlMillis(ttl))
		if err := c.do(ctx, write, noRetryBool{cmd}); err != nil {
			return false, cachekit.WrapError("Expire", key, err)
		}
		return cmd.Val(), nil
	}
	var exists *goredis.IntCmd
	k := c.key(key)
	err := c.runKey(ctx, write, k, func(ctx context.Context) error {
		exists = goredis.NewIntCmd(ctx, "exists", k)
		pipe := c.client.TxPipeline()
		_ = pipe.Process(ctx, noRetryInt{exists})
		_ = pipe.Process(ctx, noRetryBool{goredis.NewBoolCmd(ctx, "persist", k)})
		_, err := pipe.Exec(ctx)
		return err
	})
	if err != nil {
		return false, cachekit.WrapError("Expire", key, err)
	}
	return exists.Val() > 0, nil
}

// Clear removes every key in the cache's namespace and nothing else, by
// walking the keyspace with SCAN MATCH "<namespace>:*" (glob characters in
// the namespace escaped) and removing what it finds with UNLINK, in batches
// of [Options.ScanCount]. On a cluster it walks every master, concurrently.
// It never uses KEYS. Keys written while Clear runs may survive it.
//
// Without a namespace, Clear fails with an error wrapping
// cachekit.ErrFlushNotAllowed and touches nothing, unless
// [Options.AllowFlush] is set (URL: allow_flush=true); it then empties the
// whole logical database with FLUSHDB ASYNC (on a cluster, on every master):
// every key in it goes, whoever wrote it.
func (c *Cache) Clear(ctx context.Context) error {
	if err := c.begin(); err != nil {
		return cachekit.WrapError("Clear", "", err)
	}
	if c.pattern == "" && !c.allowFlush {
		return cachekit.WrapError("Clear", "", cachekit.ErrFlushNotAllowed)
	}
	if err := ctx.Err(); err != nil {
		return cachekit.WrapError("Clear", "", err)
	}
	var err error
	switch c.kind {
	case cluster:
		err = c.client.(*goredis.ClusterClient).ForEachMaster(ctx, func(_ context.Context, node *goredis.Client) error {
			return c.clearNode(ctx, node, true)
		})
	case ring:
		err = c.client.(*goredis.Ring).ForEachShard(ctx, func(_ context.Context, node *goredis.Client) error {
			return c.clearNode(ctx, node, false)
		})
	default:
		err = c.clearNode(ctx, c.client, false)
	}
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = &causeError{sentinel: cerr, err: err}
	}
	return cachekit.WrapError("Clear", "", err)
}

// clearNode clears this cache's keys from one node: FLUSHDB ASYNC without a
// namespace, else a SCAN/UNLINK walk. On a cluster node, one UNLINK may only
// name keys of one hash slot, so each batch is split by slot and pipelined.
func (c *Cache) clearNode(ctx context.Context, node goredis.UniversalClient, clusterNode bool) error {
	var master *goredis.Client // on a cluster: the round trips answer to its breaker
	if clusterNode {
		master, _ = node.(*goredis.Client)
	}
	if c.pattern == "" {
		cmd := noRetryStatus{goredis.NewStatusCmd(ctx, "flushdb", "async")}
		return c.runNode(ctx, write, master, func(ctx context.Context) error { return node.Process(ctx, cmd) })
	}
	var cursor uint64
	for {
		var keys []string
		next := cursor
		err := c.runNode(ctx, read, master, func(ctx context.Context) error {
			var err error
			keys, next, err = node.Scan(ctx, cursor, c.pattern, int64(c.scanCount)).Result()
			return err
		})
		if err != nil {
			return err
		}
		for len(keys) > 0 {
			batch := keys[:min(len(keys), c.scanCount)]
			keys = keys[len(batch):]
			groups := map[uint16][]string{0: batch}
			if clusterNode {
				groups = make(map[uint16][]string)
				for _, k := range batch {
					s := slot(k)
					groups[s] = append(groups[s], k)
				}
			}
			err := c.runNode(ctx, write, master, func(ctx context.Context) error {
				// On a cluster, an UNLINK for a slot being migrated away
				// is redirected; execRedirected resends it through the
				// cluster client, to wherever its keys now are.
				cmds := make([]goredis.Cmder, 0, len(groups))
				for _, g := range groups {
					args := make([]any, 1+len(g))
					args[0] = "unlink"
					for i, k := range g {
						args[1+i] = k
					}
					cmds = append(cmds, noRetryInt{goredis.NewIntCmd(ctx, args...)})
				}
				return c.execRedirected(ctx, nil, node.Pipeline(), cmds)
			})
			if err != nil {
				return err
			}
		}
		cursor = next
		if cursor == 0 {
			return nil
		}
	}
}
