package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
)

// invalidateChannel is where Redis sends the invalidation messages of
// client tracking to a REDIRECT target.
const invalidateChannel = "__redis__:invalidate"

// trackingBackplane receives the invalidations the Redis server sends for
// the key prefixes of the watched caches (CLIENT TRACKING ON BCAST), so that
// a write by any client invalidates.
//
// A session holds two connections: a subscription to __redis__:invalidate,
// and a dedicated connection on which CLIENT TRACKING ON BCAST REDIRECT
// <subscription's client id> PREFIX ... is issued. The subscription is
// read by go-redis's PubSub with a blocking read, so an invalidation is
// handled as soon as it arrives.
type trackingBackplane struct {
	user   *goredis.Client // the client given to NewBackplane
	owned  bool            // user is ours to close
	client *goredis.Client // ours: user's options with RESP2, see newTrackingBackplane
	recv   *receiver
	closed atomic.Bool
	once   sync.Once
	err    error

	mu       sync.Mutex
	watched  map[string]string // namespace -> key prefix ("" for all keys)
	conn     *goredis.Conn     // the current session's tracking connection
	redirect int64             // the current session's subscription's client id
	tracked  map[string]bool   // prefixes registered on conn
}

// newTrackingBackplane makes the backplane's own client from user's
// options, with RESP2: Redis sends the invalidations of a REDIRECT target
// that speaks RESP3 as "invalidate" push messages, which go-redis's PubSub
// does not hand over, and to a RESP2 one as messages on
// __redis__:invalidate, which it does. The own client also keeps
// client-side caching and push handlers the user configured off the
// backplane's connections.
func newTrackingBackplane(user *goredis.Client, o BackplaneOptions) *trackingBackplane {
	opt := *user.Options()
	opt.Protocol = 2
	opt.ClientSideCache, opt.ClientSideCacheConfig = nil, nil
	opt.PushNotificationProcessor = nil
	opt.MaintNotificationsConfig = nil
	opt.PoolSize, opt.MinIdleConns, opt.MaxIdleConns, opt.MaxActiveConns = 2, 0, 0, 0
	b := &trackingBackplane{user: user, client: goredis.NewClient(&opt), watched: map[string]string{}}
	b.recv = newReceiver(o.Timeout, b.session)
	return b
}

// Publish does nothing in tracking mode: the server sends the
// invalidations of every write itself. It returns an error wrapping
// cachekit.ErrClosed after Close.
func (b *trackingBackplane) Publish(ctx context.Context, _ cachekit.Invalidation) error {
	if b.closed.Load() {
		return fmt.Errorf("redis backplane: %w", cachekit.ErrClosed)
	}
	return ctx.Err()
}

// Subscribe receives the invalidations of the watched caches' keys.
func (b *trackingBackplane) Subscribe(onMessage func(cachekit.Invalidation), onError func(error)) (stop func()) {
	return b.recv.subscribe(onMessage, onError)
}

// Watch adds the key prefix of c's namespace (every key, for a cache
// without a namespace) to the tracked prefixes. When a session is running,
// it returns once the server tracks the prefix.
func (b *trackingBackplane) Watch(c cachekit.Cache) error {
	if b.closed.Load() {
		return fmt.Errorf("redis backplane: %w", cachekit.ErrClosed)
	}
	ns := cachekit.NamespaceOf(c)
	prefix := ""
	if ns != "" {
		prefix = namespacePrefix(ns)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.watched[ns]; ok {
		return nil
	}
	b.watched[ns] = prefix
	if b.conn == nil {
		return nil // the next session tracks it
	}
	if err := b.trackLocked(); err != nil {
		// The session's connection may be broken: set up a new session,
		// which tracks every watched prefix.
		b.recv.restart()
		return fmt.Errorf("redis backplane: tracking the keys of namespace %q: %w", ns, err)
	}
	return nil
}

// trackLocked registers the watched prefixes the session's connection does
// not track yet. Redis refuses overlapping prefixes in BCAST mode; the
// prefixes of namespaces never overlap (an encoded namespace holds no ':'),
// except "" (a cache without a namespace), which overlaps every other: once
// "" is tracked, nothing more is added.
func (b *trackingBackplane) trackLocked() error {
	if b.tracked[""] {
		return nil
	}
	var add []string
	for _, p := range b.watched {
		if p == "" {
			add = []string{""}
			break
		}
		if !b.tracked[p] {
			add = append(add, p)
		}
	}
	if len(add) == 0 {
		return nil
	}
	sort.Strings(add)
	args := []any{"client", "tracking", "on", "bcast", "redirect", b.redirect}
	if add[0] != "" {
		for _, p := range add {
			args = append(args, "prefix", p)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.recv.timeout)
	defer cancel()
	if err := b.conn.Do(ctx, args...).Err(); err != nil {
		return err
	}
	for _, p := range add {
		b.tracked[p] = true
	}
	return nil
}

func (b *trackingBackplane) session(r *receiver, attempt int) error {
	ps := b.client.Subscribe(context.Background())
	if !r.setPubSub(ps) {
		return nil
	}
	defer ps.Close()
	conn := b.client.Conn()
	defer func() {
		b.mu.Lock()
		b.conn, b.tracked = nil, nil
		b.mu.Unlock()
		_ = conn.Close()
	}()

	// Name the subscription's connection, so that its client id can be
	// found: go-redis's PubSub cannot run CLIENT ID.
	var tok [12]byte
	_, _ = rand.Read(tok[:])
	name := "cachekit-backplane-" + hex.EncodeToString(tok[:])
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	err := ps.ClientSetName(ctx, name)
	if err == nil {
		err = ps.Subscribe(ctx, invalidateChannel)
	}
	cancel()
	if err != nil {
		return fmt.Errorf("subscribing to %s: %w", invalidateChannel, err)
	}
	if err := r.awaitSubscribed(ps, invalidateChannel); err != nil {
		return err
	}
	ctx, cancel = context.WithTimeout(context.Background(), r.timeout)
	list, err := conn.ClientList(ctx).Result()
	cancel()
	if err != nil {
		return fmt.Errorf("CLIENT LIST: %w", err)
	}
	id, ok := clientIDByName(list, name)
	if !ok {
		return errors.New("the subscription's connection is missing from CLIENT LIST")
	}

	b.mu.Lock()
	b.conn, b.redirect, b.tracked = conn, id, map[string]bool{}
	err = b.trackLocked()
	b.mu.Unlock()
	if err != nil {
		return fmt.Errorf("CLIENT TRACKING: %w", err)
	}
	r.receiving(attempt)

	check := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		defer cancel()
		b.mu.Lock()
		defer b.mu.Unlock()
		if err := conn.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("tracking connection: %w", err)
		}
		return nil
	}
	idle := 0
	lastCheck := time.Now()
	for {
		msg, err := r.receive(ps, &idle, check)
		if err == nil && time.Since(lastCheck) > r.health() {
			// A busy subscription is never idle: check the tracking
			// connection (which receives nothing) now and then anyway.
			lastCheck = time.Now()
			err = check()
		}
		if err != nil {
			if !isConnError(err) && strings.Contains(err.Error(), "unsupported pubsub message payload: <nil>") {
				// go-redis cannot read the invalidation Redis sends on
				// FLUSHDB and FLUSHALL (a null key list), and reports it
				// so: every watched namespace changed.
				b.flushAll(r)
				continue
			}
			return fmt.Errorf("subscription to %s lost: %w", invalidateChannel, err)
		}
		switch m := msg.(type) {
		case *goredis.Message:
			if m.Channel != invalidateChannel {
				continue
			}
			keys := m.PayloadSlice
			if keys == nil && m.Payload != "" {
				keys = []string{m.Payload}
			}
			b.deliver(r, keys)
		case *goredis.Subscription:
			if m.Kind == "unsubscribe" {
				return errors.New("unsubscribed from " + invalidateChannel)
			}
		}
	}
}

// clientIDByName finds the id of the connection named name in the reply of
// CLIENT LIST.
func clientIDByName(list, name string) (int64, bool) {
	for _, line := range strings.Split(list, "\n") {
		var id int64 = -1
		named := false
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "id":
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					id = n
				}
			case "name":
				named = v == name
			}
		}
		if named && id >= 0 {
			return id, true
		}
	}
	return 0, false
}

// flushAll tells the subscribers that every watched namespace changed.
func (b *trackingBackplane) flushAll(r *receiver) {
	for _, ns := range b.namespaces() {
		r.subs.message(cachekit.Invalidation{Namespace: ns, All: true})
	}
}

func (b *trackingBackplane) namespaces() []string {
	b.mu.Lock()
	out := make([]string, 0, len(b.watched))
	for ns := range b.watched {
		out = append(out, ns)
	}
	b.mu.Unlock()
	sort.Strings(out)
	return out
}

// deliver maps the invalidated Redis keys back to (namespace, key) with
// the inverse of the key layout and sends one Invalidation per watched
// namespace. A key "a:b" belongs to namespace "a" (key "b") and, when a
// cache without a namespace is watched, to it too (key "a:b").
func (b *trackingBackplane) deliver(r *receiver, raw []string) {
	byNS := map[string][]string{}
	b.mu.Lock()
	_, all := b.watched[""]
	for _, k := range raw {
		if i := strings.IndexByte(k, ':'); i >= 0 {
			if ns, ok := decodeNamespace(k[:i]); ok && ns != "" {
				if _, w := b.watched[ns]; w {
					byNS[ns] = append(byNS[ns], k[i+1:])
				}
			}
		}
		if all {
			byNS[""] = append(byNS[""], k)
		}
	}
	b.mu.Unlock()
	nss := make([]string, 0, len(byNS))
	for ns := range byNS {
		nss = append(nss, ns)
	}
	sort.Strings(nss)
	for _, ns := range nss {
		r.subs.message(cachekit.Invalidation{Namespace: ns, Keys: byNS[ns]})
	}
}

// decodeNamespace inverts the encoding of namespacePrefix (without its
// ':'): "%3A" is ':' and "%25" is '%'. It reports false for a string that
// encoding cannot produce.
func decodeNamespace(enc string) (string, bool) {
	if !strings.Contains(enc, "%") {
		return enc, true
	}
	var sb strings.Builder
	sb.Grow(len(enc))
	for i := 0; i < len(enc); i++ {
		if enc[i] != '%' {
			sb.WriteByte(enc[i])
			continue
		}
		switch {
		case strings.HasPrefix(enc[i:], "%3A"):
			sb.WriteByte(':')
		case strings.HasPrefix(enc[i:], "%25"):
			sb.WriteByte('%')
		default:
			return "", false
		}
		i += 2
	}
	return sb.String(), true
}

// Close ends the subscriptions and, for a backplane opened from a URL,
// closes its client.
func (b *trackingBackplane) Close() error {
	b.once.Do(func() {
		b.closed.Store(true)
		b.recv.close()
		b.err = b.client.Close()
		if b.owned {
			b.err = errors.Join(b.err, b.user.Close())
		}
	})
	return b.err
}
