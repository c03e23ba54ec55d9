package redis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
)

// DefaultTimeout bounds each operation whose context has no deadline, when
// [Options.Timeout] is zero.
const DefaultTimeout = time.Second

// MaxValueSize is the largest value Redis stores with its default
// configuration: proto-max-bulk-len, 512 MiB. Larger values are rejected with
// [cachekit.ErrTooLarge] before anything is sent.
const MaxValueSize = 512 << 20

// DefaultScanCount is the COUNT hint Clear gives SCAN, and the most keys it
// unlinks in one command, when [Options.ScanCount] is zero.
const DefaultScanCount = 1000

// Options configures a [Cache]. A nil *Options is the same as a zero Options,
// and every zero field means its documented default.
type Options struct {
	// Namespace, when not empty, is prepended to every key as
	// Namespace + ":" + key, and Clear removes only the keys under it. The
	// default, "", stores keys as they are and makes Clear flush the whole
	// database (see [Cache.Clear]).
	//
	// Namespaces nest: keys of namespace "app:users" are also under
	// namespace "app", so Clear on "app" removes them too. On a cluster, a
	// namespace holding a hash tag such as "{app}" puts every key of the
	// namespace in one slot, on one node.
	Namespace string

	// Timeout bounds each operation whose context has no deadline (a
	// deadline in the context always wins). For Clear it bounds each round
	// trip of the walk rather than the whole walk. Zero means
	// [DefaultTimeout] (1s); a negative value means no bound other than the
	// client's own read and write timeouts. Calls made with a context that
	// can never be cancelled (context.Background) share timers, so their
	// deadline may be up to 1% of Timeout (at least 0.1ms) late.
	Timeout time.Duration

	// MaxValueSize is the largest value Set, SetMany and Add accept; a
	// larger one fails with cachekit.ErrTooLarge before anything is sent.
	// Zero, or anything above [MaxValueSize] (512 MiB, Redis's default
	// proto-max-bulk-len), means MaxValueSize. A server configured with a
	// lower proto-max-bulk-len refuses larger values itself, usually by
	// dropping the connection; the cache then asks it for its limit
	// (CONFIG GET) and reports ErrTooLarge too. Set MaxValueSize to the
	// server's limit to have such values rejected before they are sent.
	MaxValueSize int

	// ScanCount is the COUNT hint Clear passes to SCAN and the most keys it
	// removes with one UNLINK. Zero means [DefaultScanCount] (1000).
	ScanCount int
}

// clientKind says how multi-key operations are routed.
type clientKind int

const (
	single  clientKind = iota // *goredis.Client (standalone or Sentinel failover), or unknown
	cluster                   // *goredis.ClusterClient: keys grouped by hash slot
	ring                      // *goredis.Ring: keys routed one by one
)

// Cache is a [cachekit.Cache] stored in Redis through a go-redis
// UniversalClient: a standalone or Sentinel-managed server (*goredis.Client,
// from NewClient or NewFailoverClient), a Redis Cluster
// (*goredis.ClusterClient) or a *goredis.Ring. Every operation is one
// command or one pipelined round trip (on a cluster, one per node involved,
// run concurrently).
//
// Create one with [New] or through cachekit.Open with a redis:// URL. It is
// safe for concurrent use.
type Cache struct {
	client   goredis.UniversalClient
	kind     clientKind
	owned    bool // Close closes client
	ctxAware bool // the client bounds I/O by the context's deadline itself

	prefix    string // Namespace + ":", or ""
	pattern   string // SCAN MATCH pattern for Clear; "" without a namespace
	timeout   time.Duration
	slack     time.Duration // how late a shared default deadline may be
	maxValue  int
	scanCount int

	shared atomic.Pointer[sharedTimer] // see bound
	closed atomic.Bool
}

var _ cachekit.Cache = (*Cache)(nil)

// New returns a Cache that stores its entries through client. The client
// stays the caller's: Close leaves it open, and it must outlive the cache.
//
// Deadlines: a client created with ContextTimeoutEnabled set (and read and
// write timeouts not set to -2) applies the context's deadline to the socket
// itself, and the cache calls it directly; this is the fast path and the
// recommended setup. With any other client the cache runs each call on its
// own goroutine and returns as soon as the context is done; the abandoned
// call then ends on its own when the client's read or write timeout fires,
// so those timeouts must not be disabled.
func New(client goredis.UniversalClient, opts *Options) *Cache {
	if client == nil {
		panic("redis.New: nil client")
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	c := &Cache{client: client, scanCount: o.ScanCount, timeout: o.Timeout, maxValue: o.MaxValueSize}
	if c.scanCount <= 0 {
		c.scanCount = DefaultScanCount
	}
	switch {
	case c.timeout == 0:
		c.timeout = DefaultTimeout
	case c.timeout < 0:
		c.timeout = 0
	}
	c.slack = max(c.timeout/100, 100*time.Microsecond)
	if c.maxValue <= 0 || c.maxValue > MaxValueSize {
		c.maxValue = MaxValueSize
	}
	if o.Namespace != "" {
		c.prefix = o.Namespace + ":"
		c.pattern = escapeGlob(c.prefix) + "*"
	}
	switch cl := client.(type) {
	case *goredis.Client:
		opt := cl.Options()
		c.ctxAware = opt.ContextTimeoutEnabled && opt.ReadTimeout >= 0 && opt.WriteTimeout >= 0
	case *goredis.ClusterClient:
		c.kind = cluster
		opt := cl.Options()
		c.ctxAware = opt.ContextTimeoutEnabled && opt.ReadTimeout >= 0 && opt.WriteTimeout >= 0
	case *goredis.Ring:
		c.kind = ring
		opt := cl.Options()
		c.ctxAware = opt.ContextTimeoutEnabled && opt.ReadTimeout >= 0 && opt.WriteTimeout >= 0
	}
	return c
}

// wireKeys returns the Redis keys for the user's keys. With a namespace the
// keys are built in one string and sliced from it: one allocation, not one
// per key.
func (c *Cache) wireKeys(keys []string) []string {
	if c.prefix == "" {
		return keys
	}
	n := 0
	for _, k := range keys {
		n += len(c.prefix) + len(k)
	}
	var b strings.Builder
	b.Grow(n)
	for _, k := range keys {
		b.WriteString(c.prefix)
		b.WriteString(k)
	}
	all := b.String()
	out := make([]string, len(keys))
	off := 0
	for i, k := range keys {
		end := off + len(c.prefix) + len(k)
		out[i] = all[off:end]
		off = end
	}
	return out
}

// key returns the Redis key for the user's key.
func (c *Cache) key(k string) string {
	if c.prefix == "" {
		return k
	}
	return c.prefix + k
}

// Close marks the cache closed; every later call fails with
// cachekit.ErrClosed. A cache opened from a URL also closes its client; one
// made by [New] leaves the caller's client open. Close is idempotent.
func (c *Cache) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	if c.owned {
		return c.client.Close()
	}
	return nil
}

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

// mayDetach reports whether run may leave a call running on its own
// goroutine after returning, in which case values handed to it must be
// copies the caller cannot change.
func (c *Cache) mayDetach() bool { return !c.ctxAware }

// run performs one round trip: fn issues the command(s) with the context it
// is given. It applies the default timeout, makes sure the deadline holds
// whatever the client's settings, and makes context-caused errors
// errors.Is-able as the context's error.
func (c *Cache) run(ctx context.Context, fn func(ctx context.Context) error) error {
	ctx, cancel := c.bound(ctx)
	if cancel != nil {
		defer cancel()
	}
	var err error
	if c.ctxAware || ctx.Done() == nil {
		err = fn(ctx)
	} else {
		err = detached(ctx, fn)
	}
	return c.finish(ctx, err)
}

// do is run for a single command, without a closure on the fast path.
func (c *Cache) do(ctx context.Context, cmd goredis.Cmder) error {
	ctx, cancel := c.bound(ctx)
	if cancel != nil {
		defer cancel()
	}
	var err error
	if c.ctxAware || ctx.Done() == nil {
		err = c.client.Process(ctx, cmd)
	} else {
		err = detached(ctx, func(ctx context.Context) error { return c.client.Process(ctx, cmd) })
	}
	return c.finish(ctx, err)
}

// finish translates the error of a round trip run under ctx.
func (c *Cache) finish(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, goredis.ErrClosed) && c.closed.Load() {
		return &causeError{sentinel: cachekit.ErrClosed, err: err}
	}
	return contextError(ctx, err)
}

// bound returns ctx with the default timeout applied when it has no
// deadline, and the cancel func to call afterwards (nil when there is none).
//
// A context that can never end by itself (context.Background, or values on
// top of it: Done returns nil) gets a timer-backed deadline shared with the
// other calls starting within the same [slack] interval: creating a timer per
// call costs about as much as the rest of the cache's work. Such a deadline
// is at most slack late.
func (c *Cache) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.timeout <= 0 {
		return ctx, nil
	}
	if _, ok := ctx.Deadline(); ok {
		return ctx, nil
	}
	if ctx.Done() != nil {
		return context.WithTimeout(ctx, c.timeout)
	}
	shared := c.sharedDeadline()
	if ctx == context.Background() {
		return shared, nil
	}
	return valuesFrom{Context: shared, values: ctx}, nil
}

// sharedTimer is a context ending at deadline, used by every call that
// starts early enough for it to be at most slack later than its own.
type sharedTimer struct {
	ctx      context.Context
	cancel   context.CancelFunc // never called: the context ends at its deadline
	deadline time.Time
}

// sharedDeadline returns a context that ends between c.timeout and
// c.timeout + c.slack from now.
func (c *Cache) sharedDeadline() context.Context {
	want := time.Now().Add(c.timeout)
	if s := c.shared.Load(); s != nil && !s.deadline.Before(want) {
		return s.ctx
	}
	deadline := want.Add(c.slack)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	c.shared.Store(&sharedTimer{ctx: ctx, cancel: cancel, deadline: deadline})
	return ctx
}

// valuesFrom is a context whose deadline, Done and Err come from the
// embedded context and whose values come from another one.
type valuesFrom struct {
	context.Context
	values context.Context
}

func (v valuesFrom) Value(key any) any { return v.values.Value(key) }

// detached runs fn on its own goroutine and returns when it finishes or ctx
// is done, whichever is first. It is for clients that ignore the context's
// deadline on the socket: fn then goes on until the client's own timeouts
// end it, and its results are dropped.
func detached(ctx context.Context, fn func(ctx context.Context) error) error {
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		select {
		case err := <-done: // finished at the same moment: keep the result
			return err
		default:
			return ctx.Err()
		}
	}
}

// minBulkLimit is the lowest proto-max-bulk-len a Redis server accepts
// (1mb): a value no larger always fits.
const minBulkLimit = 1 << 20

// writeError explains a failed write of values up to size bytes. A server
// refuses a bulk string over its proto-max-bulk-len with an error reply and
// drops the connection at once, so the client usually sees the connection
// reset rather than the reply. When that happens to a value that could be
// over the limit, writeError asks the server for its limit (CONFIG GET), and
// reports ErrTooLarge if the value is over it. The client's error stays
// reachable either way.
func (c *Cache) writeError(ctx context.Context, err error, size int) error {
	if err == nil {
		return nil
	}
	if e := tooLarge(err); e != err || size <= minBulkLimit || !connDropped(err) {
		return e
	}
	var limit int
	probe := c.run(ctx, func(ctx context.Context) error {
		vals, err := c.client.ConfigGet(ctx, "proto-max-bulk-len").Result()
		if err == nil {
			limit, err = strconv.Atoi(vals["proto-max-bulk-len"])
		}
		return err
	})
	if probe == nil && limit > 0 && size > limit {
		return &causeError{
			sentinel: fmt.Errorf("%w: %d bytes, the server's proto-max-bulk-len is %d", cachekit.ErrTooLarge, size, limit),
			err:      err,
		}
	}
	return err
}

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
	if err := c.begin(); err != nil {
		return nil, cachekit.WrapError("Get", key, err)
	}
	if err := cachekit.CheckKey(key); err != nil {
		return nil, cachekit.WrapError("Get", key, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, cachekit.WrapError("Get", key, err)
	}
	cmd := goredis.NewStringCmd(ctx, "get", c.key(key))
	if err := c.do(ctx, cmd); err != nil {
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

// bySlot groups indexes into wire (Redis keys) by cluster hash slot.
func bySlot(wire []string) map[uint16][]int {
	groups := make(map[uint16][]int)
	for i, k := range wire {
		s := slot(k)
		groups[s] = append(groups[s], i)
	}
	return groups
}

// GetMany returns the values of the keys that are present. On a standalone
// server it is one MGET; on a cluster the keys are grouped by hash slot into
// one MGET per slot, pipelined per node (never a CROSSSLOT error); on a Ring,
// one GET per key, pipelined per shard.
func (c *Cache) GetMany(ctx context.Context, keys []string) (map[string][]byte, error) {
	if err := c.begin(); err != nil {
		return nil, cachekit.WrapError("GetMany", "", err)
	}
	for _, k := range keys {
		if err := cachekit.CheckKey(k); err != nil {
			return nil, cachekit.WrapError("GetMany", "", fmt.Errorf("key %q: %w", k, err))
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, cachekit.WrapError("GetMany", "", err)
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
	if err := c.do(ctx, cmd); err != nil {
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
	err := c.run(ctx, func(ctx context.Context) error {
		pipe := c.client.Pipeline()
		for i, b := range batches {
			args := make([]any, 1+len(b.idx))
			args[0] = "mget"
			for j, k := range b.idx {
				args[1+j] = wire[k]
			}
			batches[i].cmd = goredis.NewSliceCmd(ctx, args...)
			_ = pipe.Process(ctx, batches[i].cmd)
		}
		_, err := pipe.Exec(ctx)
		return err
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
	err := c.run(ctx, func(ctx context.Context) error {
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
	err := c.do(ctx, goredis.NewStatusCmd(ctx, setArgs(c.key(key), value, ttl, false)...))
	return cachekit.WrapError("Set", key, c.writeError(ctx, err, len(value)))
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
			return cachekit.WrapError("SetMany", "", fmt.Errorf("key %q: %w", k, err))
		}
		if err := c.checkValue(v); err != nil {
			return cachekit.WrapError("SetMany", "", fmt.Errorf("key %q: %w", k, err))
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
	err := c.run(ctx, func(ctx context.Context) error {
		pipe := c.client.Pipeline()
		for k, v := range items {
			pipe.Process(ctx, goredis.NewStatusCmd(ctx, setArgs(c.key(k), v, ttl, false)...))
		}
		_, err := pipe.Exec(ctx)
		return err
	})
	return cachekit.WrapError("SetMany", "", c.writeError(ctx, err, largest))
}

// Add stores value under key only if key is absent, atomically: one
// SET NX. If key is present it returns an error wrapping cachekit.ErrExists.
func (c *Cache) Add(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := c.checkWrite(ctx, key, value, ttl); err != nil {
		return cachekit.WrapError("Add", key, err)
	}
	if c.mayDetach() {
		value = bytes.Clone(value)
	}
	cmd := goredis.NewBoolCmd(ctx, setArgs(c.key(key), value, ttl, true)...)
	if err := c.do(ctx, cmd); err != nil {
		return cachekit.WrapError("Add", key, c.writeError(ctx, err, len(value)))
	}
	if !cmd.Val() {
		return cachekit.WrapError("Add", key, cachekit.ErrExists)
	}
	return nil
}

// Delete removes keys and reports how many of them existed (a key given
// twice counts once). On a standalone server it is one DEL; on a cluster, one
// DEL per hash slot, pipelined per node.
func (c *Cache) Delete(ctx context.Context, keys ...string) (int, error) {
	if err := c.begin(); err != nil {
		return 0, cachekit.WrapError("Delete", "", err)
	}
	for _, k := range keys {
		if err := cachekit.CheckKey(k); err != nil {
			return 0, cachekit.WrapError("Delete", "", fmt.Errorf("key %q: %w", k, err))
		}
	}
	if err := ctx.Err(); err != nil {
		return 0, cachekit.WrapError("Delete", "", err)
	}
	if len(keys) == 0 {
		return 0, nil
	}
	// A key given twice is removed once: DEL counts it once, whether the
	// repeats share a command (same slot) or not (the second finds nothing).
	wire := c.wireKeys(keys)
	var cmds []*goredis.IntCmd
	err := c.run(ctx, func(ctx context.Context) error {
		switch c.kind {
		case cluster:
			pipe := c.client.Pipeline()
			for _, idx := range bySlot(wire) {
				group := make([]string, len(idx))
				for j, i := range idx {
					group[j] = wire[i]
				}
				cmds = append(cmds, pipe.Del(ctx, group...))
			}
			_, err := pipe.Exec(ctx)
			if pipelineRefused(err) {
				// go-redis routes multi-slot commands itself here: one DEL.
				cmd := c.client.Del(ctx, wire...)
				cmds = append(cmds[:0], cmd)
				err = cmd.Err()
			}
			return err
		case ring:
			pipe := c.client.Pipeline()
			for _, k := range wire {
				cmds = append(cmds, pipe.Del(ctx, k))
			}
			_, err := pipe.Exec(ctx)
			return err
		default:
			cmd := c.client.Del(ctx, wire...)
			cmds = append(cmds, cmd)
			return cmd.Err()
		}
	})
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
	if err := c.begin(); err != nil {
		return false, cachekit.WrapError("Exists", key, err)
	}
	if err := cachekit.CheckKey(key); err != nil {
		return false, cachekit.WrapError("Exists", key, err)
	}
	if err := ctx.Err(); err != nil {
		return false, cachekit.WrapError("Exists", key, err)
	}
	cmd := goredis.NewIntCmd(ctx, "exists", c.key(key))
	if err := c.do(ctx, cmd); err != nil {
		return false, cachekit.WrapError("Exists", key, err)
	}
	return cmd.Val() > 0, nil
}

// Increment adds delta to the integer stored under key and returns the new
// value: one INCRBY. A missing key starts at 0 with no expiry; an existing
// key keeps its TTL. A value that is not a base-10 int64, or a result that
// would overflow, fails with an error wrapping cachekit.ErrNotInteger.
func (c *Cache) Increment(ctx context.Context, key string, delta int64) (int64, error) {
	if err := c.begin(); err != nil {
		return 0, cachekit.WrapError("Increment", key, err)
	}
	if err := cachekit.CheckKey(key); err != nil {
		return 0, cachekit.WrapError("Increment", key, err)
	}
	if err := ctx.Err(); err != nil {
		return 0, cachekit.WrapError("Increment", key, err)
	}
	cmd := goredis.NewIntCmd(ctx, "incrby", c.key(key), delta)
	if err := c.do(ctx, cmd); err != nil {
		return 0, cachekit.WrapError("Increment", key, notInteger(err))
	}
	return cmd.Val(), nil
}

// Expire sets a new TTL on an existing key and reports whether the key
// existed. A positive ttl is one PEXPIRE (milliseconds, rounded up); a ttl
// of 0 removes the expiry with EXISTS and PERSIST in one MULTI/EXEC, since
// PERSIST alone cannot tell a missing key from one without a TTL.
func (c *Cache) Expire(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if err := c.begin(); err != nil {
		return false, cachekit.WrapError("Expire", key, err)
	}
	if err := cachekit.CheckKey(key); err != nil {
		return false, cachekit.WrapError("Expire", key, err)
	}
	if err := cachekit.CheckTTL(ttl); err != nil {
		return false, cachekit.WrapError("Expire", key, err)
	}
	if err := ctx.Err(); err != nil {
		return false, cachekit.WrapError("Expire", key, err)
	}
	if ttl > 0 {
		cmd := goredis.NewBoolCmd(ctx, "pexpire", c.key(key), ttlMillis(ttl))
		if err := c.do(ctx, cmd); err != nil {
			return false, cachekit.WrapError("Expire", key, err)
		}
		return cmd.Val(), nil
	}
	var ok bool
	err := c.run(ctx, func(ctx context.Context) error {
		k := c.key(key)
		var exists *goredis.IntCmd
		_, err := c.client.TxPipelined(ctx, func(pipe goredis.Pipeliner) error {
			exists = pipe.Exists(ctx, k)
			pipe.Persist(ctx, k)
			return nil
		})
		if err == nil {
			ok = exists.Val() > 0
		}
		return err
	})
	if err != nil {
		return false, cachekit.WrapError("Expire", key, err)
	}
	return ok, nil
}

// Clear removes every key in the cache's namespace and nothing else, by
// walking the keyspace with SCAN MATCH "<namespace>:*" (glob characters in
// the namespace escaped) and removing what it finds with UNLINK, in batches
// of [Options.ScanCount]. On a cluster it walks every master, concurrently.
// It never uses KEYS. Keys written while Clear runs may survive it.
//
// WITHOUT A NAMESPACE, Clear empties the whole logical database with
// FLUSHDB ASYNC (on a cluster, on every master): every key in it goes,
// whoever wrote it. Give the cache a namespace unless it owns the database.
func (c *Cache) Clear(ctx context.Context) error {
	if err := c.begin(); err != nil {
		return cachekit.WrapError("Clear", "", err)
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
func (c *Cache) clearNode(ctx context.Context, node goredis.Cmdable, clusterNode bool) error {
	if c.pattern == "" {
		return c.run(ctx, func(ctx context.Context) error {
			return node.FlushDBAsync(ctx).Err()
		})
	}
	var cursor uint64
	for {
		var keys []string
		next := cursor
		err := c.run(ctx, func(ctx context.Context) error {
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
			err := c.run(ctx, func(ctx context.Context) error {
				if !clusterNode {
					return node.Unlink(ctx, batch...).Err()
				}
				groups := make(map[uint16][]string)
				for _, k := range batch {
					s := slot(k)
					groups[s] = append(groups[s], k)
				}
				pipe := node.Pipeline()
				for _, g := range groups {
					pipe.Unlink(ctx, g...)
				}
				_, err := pipe.Exec(ctx)
				return err
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
