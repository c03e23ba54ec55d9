package redis

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/internal/urlparam"
)

func init() {
	cachekit.RegisterBackplane("redis", cachekit.BackplaneOpenerFunc(openBackplaneURL))
	cachekit.RegisterBackplane("rediss", cachekit.BackplaneOpenerFunc(openBackplaneURL))
}

// Backplane modes, for [BackplaneOptions].Mode.
const (
	// ModePubSub carries the invalidations cachekit publishes on a Redis
	// pub/sub channel. It works whatever the cache's backend is.
	ModePubSub = "pubsub"
	// ModeTracking has the Redis server send the invalidations itself
	// (CLIENT TRACKING in broadcast mode), for writes by any client. It
	// is for caches stored in that Redis server (their namespaces give the
	// tracked key prefixes), and its Publish does nothing.
	ModeTracking = "tracking"
)

// BackplaneChannelPrefix starts the name of the Redis channel of a pub/sub
// backplane: channel "app" is the Redis channel "cachekit:bp:app".
const BackplaneChannelPrefix = "cachekit:bp:"

// DefaultBackplaneChannel is the channel of a pub/sub backplane whose
// options name none.
const DefaultBackplaneChannel = "default"

// BackplaneOptions configure [NewBackplane]. The zero value, and a nil
// *BackplaneOptions, mean the documented defaults.
type BackplaneOptions struct {
	// Mode is ModePubSub (the default, "") or ModeTracking.
	Mode string
	// Channel names the pub/sub channel (default DefaultBackplaneChannel);
	// the Redis channel is BackplaneChannelPrefix + Channel. Processes
	// whose backplanes share a channel see each other's invalidations, and
	// the messages carry the cache's namespace, so caches of different
	// namespaces may share one. Tracking mode takes no channel.
	Channel string
	// Timeout bounds each Publish, the wait of the first Subscribe for its
	// subscription, and each step of setting one up (default 1s). An idle
	// subscription checks its connection with a PING every
	// max(Timeout, 1s), and reconnects when no reply comes within that
	// again.
	Timeout time.Duration
}

// NewBackplane returns a cachekit.Backplane over client: Redis pub/sub by
// default, or server-assisted invalidation with Mode ModeTracking (which
// needs a *goredis.Client, standalone or from NewFailoverClient, or a
// *goredis.ClusterClient, tracked on every master; it implements
// cachekit.BackplaneWatcher). The client stays the caller's:
// Close leaves it open. It does not contact the server; the first Subscribe
// does. See the package documentation, "Backplane".
func NewBackplane(client goredis.UniversalClient, opts *BackplaneOptions) (cachekit.Backplane, error) {
	if client == nil {
		return nil, errors.New("redis backplane: nil client")
	}
	var o BackplaneOptions
	if opts != nil {
		o = *opts
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	switch o.Mode {
	case "", ModePubSub:
		if o.Channel == "" {
			o.Channel = DefaultBackplaneChannel
		}
		return newPubSubBackplane(client, o), nil
	case ModeTracking:
		if o.Channel != "" {
			return nil, errors.New("redis backplane: Channel applies to pub/sub mode only; tracking mode uses the server's __redis__:invalidate channel")
		}
		switch cl := client.(type) {
		case *goredis.Client:
			return newTrackingBackplane(cl, o), nil
		case *goredis.ClusterClient:
			return newClusterTracking(cl, o), nil
		}
		return nil, fmt.Errorf("redis backplane: tracking mode needs a *goredis.Client (standalone or Sentinel failover) or a *goredis.ClusterClient, not %T; use pub/sub mode", client)
	default:
		return nil, fmt.Errorf("redis backplane: unknown mode %q, want %q or %q", o.Mode, ModePubSub, ModeTracking)
	}
}

// openBackplaneURL opens a backplane from a redis:// or rediss:// URL; the
// backplane owns its client.
func openBackplaneURL(_ context.Context, u *url.URL) (cachekit.Backplane, error) {
	opt, o, err := parseBackplaneURL(u)
	if err != nil {
		return nil, err
	}
	bp, err := NewBackplane(goredis.NewClient(opt), &o)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", cachekit.ErrInvalidURL, err)
	}
	switch b := bp.(type) {
	case *pubsubBackplane:
		b.owned = true
	case *trackingBackplane:
		b.owned = true
	}
	return bp, nil
}

// parseBackplaneURL reads a backplane URL:
//
//	redis[s]://[user:password@]host[:port][/db]?channel=app&mode=pubsub&timeout=1s&dial_timeout=5s
func parseBackplaneURL(u *url.URL) (*goredis.Options, BackplaneOptions, error) {
	var o BackplaneOptions
	scheme := strings.ToLower(u.Scheme)
	if scheme != "redis" && scheme != "rediss" {
		return nil, o, urlError("unsupported backplane scheme %q, want redis:// or rediss://", u.Scheme)
	}
	if u.Opaque != "" {
		return nil, o, urlError("want %s://host:port/...", scheme)
	}
	if u.Fragment != "" {
		return nil, o, urlError("unexpected #fragment")
	}
	addrs, err := splitHosts(u.Host, "6379")
	if err != nil {
		return nil, o, err
	}
	if len(addrs) > 1 {
		return nil, o, urlError("a backplane URL takes one host")
	}
	db, err := parseDB(u.Path)
	if err != nil {
		return nil, o, err
	}
	p := urlparam.New(u)
	o.Mode = p.String("mode", ModePubSub)
	hasChannel := p.Has("channel")
	o.Channel = p.String("channel", "")
	timeout := p.Duration("timeout", -1)
	dialTimeout := p.Duration("dial_timeout", 0)
	if err := p.Err(); err != nil {
		return nil, o, err
	}
	switch o.Mode {
	case ModePubSub:
		if hasChannel && o.Channel == "" {
			return nil, o, urlError("empty channel")
		}
	case ModeTracking:
		if hasChannel {
			return nil, o, urlError("channel applies to mode=pubsub only; mode=tracking uses the server's invalidation messages")
		}
	default:
		return nil, o, urlError("bad mode %q, want %s or %s", o.Mode, ModePubSub, ModeTracking)
	}
	if timeout == 0 {
		return nil, o, urlError("timeout must be positive")
	}
	if timeout > 0 {
		o.Timeout = timeout
	}
	var username, password string
	if u.User != nil {
		username = u.User.Username()
		password, _ = u.User.Password()
	}
	var tlsConfig *tls.Config
	if scheme == "rediss" {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return &goredis.Options{
		Addr:                  addrs[0],
		Username:              username,
		Password:              password,
		DB:                    db,
		TLSConfig:             tlsConfig,
		DialTimeout:           dialTimeout,
		ContextTimeoutEnabled: true,
		DialerRetries:         1,
		// A pool of a few connections is plenty: one for the subscription
		// (two in tracking mode) and the publishes.
		PoolSize: 4,
	}, o, nil
}

// subscribers fans a backplane's messages out to its subscriptions, one
// call at a time.
type subscribers struct {
	mu   sync.Mutex
	next uint64
	subs map[uint64]*subscriber
	// deliver is held while subscribers are called: calls never overlap,
	// and stop waits for a call in progress.
	deliver sync.Mutex
}

type subscriber struct {
	onMessage func(cachekit.Invalidation)
	onError   func(error)
	stopped   atomic.Bool
}

func (s *subscribers) add(onMessage func(cachekit.Invalidation), onError func(error)) (stop func()) {
	sub := &subscriber{onMessage: onMessage, onError: onError}
	s.mu.Lock()
	if s.subs == nil {
		s.subs = map[uint64]*subscriber{}
	}
	id := s.next
	s.next++
	s.subs[id] = sub
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			sub.stopped.Store(true)
			s.mu.Lock()
			delete(s.subs, id)
			s.mu.Unlock()
			s.deliver.Lock()
			s.deliver.Unlock() //nolint:staticcheck // a barrier: a call in progress has returned
		})
	}
}

func (s *subscribers) list() []*subscriber {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*subscriber, 0, len(s.subs))
	for _, sub := range s.subs {
		out = append(out, sub)
	}
	return out
}

func (s *subscribers) message(inv cachekit.Invalidation) {
	subs := s.list()
	s.deliver.Lock()
	defer s.deliver.Unlock()
	for i, sub := range subs {
		if sub.stopped.Load() || sub.onMessage == nil {
			continue
		}
		m := inv
		if i > 0 && len(inv.Keys) > 0 {
			m.Keys = append([]string(nil), inv.Keys...) // each subscriber may keep its own
		}
		sub.onMessage(m)
	}
}

func (s *subscribers) error(err error) {
	subs := s.list()
	s.deliver.Lock()
	defer s.deliver.Unlock()
	for _, sub := range subs {
		if sub.stopped.Load() || sub.onError == nil {
			continue
		}
		sub.onError(err)
	}
}

// receiver runs a backplane's subscription: one goroutine that sets up a
// session (a subscribed connection), reads from it until it fails, reports
// the failure and sets up another, with backoff, until Close. Both modes
// use it; they differ in their session.
type receiver struct {
	subs    subscribers
	timeout time.Duration
	session func(r *receiver, attempt int) error

	mu        sync.Mutex
	closed    bool
	started   bool
	ps        *goredis.PubSub // the current session's subscription, closed by Close
	settled   chan struct{}   // closed when the first session receives, or has failed
	isSettled bool
	stop      chan struct{}
	done      chan struct{}
}

func newReceiver(timeout time.Duration, session func(r *receiver, attempt int) error) *receiver {
	return &receiver{
		timeout: timeout,
		session: session,
		settled: make(chan struct{}),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
}

// health is how long a session waits for a message before it checks its
// connection with a PING, and then for the reply.
func (r *receiver) health() time.Duration { return max(r.timeout, time.Second) }

// subscribe adds a subscription and starts the receiving goroutine on the
// first one; the first waits until the subscription is in place, so that
// it receives what is published after it returns, or until its first
// attempt failed (a server down at start-up does not hold the caller: the
// subscription comes later, with a Reset), and at most twice the timeout.
func (r *receiver) subscribe(onMessage func(cachekit.Invalidation), onError func(error)) (stop func()) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return func() {}
	}
	stop = r.subs.add(onMessage, onError)
	if !r.started {
		r.started = true
		go r.run()
	}
	r.mu.Unlock()
	t := time.NewTimer(2*r.timeout + 100*time.Millisecond) // a session's set-up: a dial and a SUBSCRIBE, each bounded by timeout
	defer t.Stop()
	select {
	case <-r.settled:
	case <-r.done:
	case <-t.C:
	}
	return stop
}

func (r *receiver) settle() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.isSettled {
		r.isSettled = true
		close(r.settled)
	}
}

// restart ends the current session, which then reconnects (and sends a
// Reset once it receives again).
func (r *receiver) restart() {
	r.mu.Lock()
	ps := r.ps
	r.mu.Unlock()
	if ps != nil {
		_ = ps.Close()
	}
}

// setPubSub records the current session's subscription so that Close can
// end it; it reports false (and closes ps) after Close.
func (r *receiver) setPubSub(ps *goredis.PubSub) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		_ = ps.Close()
		return false
	}
	r.ps = ps
	return true
}

func (r *receiver) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// receiving is called by a session once its subscription is in place.
// After a failed attempt or an earlier session, messages may have been
// lost: subscribers get a Reset.
func (r *receiver) receiving(attempt int) {
	r.settle()
	if attempt > 0 {
		r.subs.message(cachekit.Invalidation{Reset: true})
	}
}

func (r *receiver) run() {
	defer close(r.done)
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		start := time.Now()
		err := r.session(r, attempt)
		if r.isClosed() {
			return
		}
		r.settle()
		if err == nil {
			err = errors.New("subscription ended")
		}
		r.subs.error(fmt.Errorf("redis backplane: %w", err))
		if time.Since(start) > 10*time.Second {
			backoff = 50 * time.Millisecond // it had been working: retry soon
		}
		t := time.NewTimer(backoff)
		select {
		case <-r.stop:
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// close ends the subscription and waits for the receiving goroutine.
func (r *receiver) close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	close(r.stop)
	ps := r.ps
	started := r.started
	r.mu.Unlock()
	if ps != nil {
		_ = ps.Close()
	}
	if started {
		<-r.done
	}
}

// receive reads the next message of ps, sending a PING when the
// connection has been idle for health() and failing when nothing, not even
// the PONG, arrives within health() more. A connection that a frozen or
// unreachable server keeps open is found that way.
// check, when not nil, runs with the PING and fails the session when it
// fails.
func (r *receiver) receive(ps *goredis.PubSub, idle *int, check func() error) (any, error) {
	for {
		msg, err := ps.ReceiveTimeout(context.Background(), r.health())
		if err == nil {
			*idle = 0
			return msg, nil
		}
		if !isTimeout(err) || r.isClosed() {
			return nil, err
		}
		*idle++
		if *idle > 1 {
			return nil, fmt.Errorf("no reply to PING within %v: %w", r.health(), err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		err = ps.Ping(ctx)
		cancel()
		if err != nil {
			return nil, err
		}
		if check != nil {
			if err := check(); err != nil {
				return nil, err
			}
		}
	}
}

// awaitSubscribed reads the replies to a session's set-up commands until
// the confirmation of the subscription to channel.
func (r *receiver) awaitSubscribed(ps *goredis.PubSub, channel string) error {
	deadline := time.Now().Add(r.timeout)
	for {
		wait := time.Until(deadline)
		if wait <= 0 {
			return fmt.Errorf("no confirmation of SUBSCRIBE %s within %v", channel, r.timeout)
		}
		msg, err := ps.ReceiveTimeout(context.Background(), wait)
		if err != nil {
			return fmt.Errorf("subscribing to %s: %w", channel, err)
		}
		if s, ok := msg.(*goredis.Subscription); ok && s.Kind == "subscribe" && s.Channel == channel {
			return nil
		}
	}
}

// isConnError reports an error of the connection rather than of a reply.
func isConnError(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, goredis.ErrClosed) || errors.As(err, &ne)
}

// pubsubBackplane carries invalidations on a Redis pub/sub channel.
type pubsubBackplane struct {
	client  goredis.UniversalClient
	owned   bool
	channel string // the Redis channel, prefix included
	timeout time.Duration
	recv    *receiver
	closed  atomic.Bool
	once    sync.Once
	err     error
}

func newPubSubBackplane(client goredis.UniversalClient, o BackplaneOptions) *pubsubBackplane {
	b := &pubsubBackplane{
		client:  client,
		channel: BackplaneChannelPrefix + o.Channel,
		timeout: o.Timeout,
	}
	b.recv = newReceiver(o.Timeout, b.session)
	return b
}

// Publish sends inv on the channel, bounded by ctx and the backplane's
// Timeout. A publish is idempotent (a duplicate evicts again), so the
// client's retries may resend it.
func (b *pubsubBackplane) Publish(ctx context.Context, inv cachekit.Invalidation) error {
	if b.closed.Load() {
		return fmt.Errorf("redis backplane: %w", cachekit.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	if err := b.publisher(ctx).Publish(ctx, b.channel, encodeInvalidation(inv)).Err(); err != nil {
		return fmt.Errorf("redis backplane: publish on %s: %w", b.channel, err)
	}
	return nil
}

// publisher returns the client to publish with. On a Cluster that is the
// master of the channel's hash slot, which is where go-redis puts the
// subscription: go-redis sends PUBLISH (a keyless command) to a random
// node, and a message published on another node reaches the subscriber
// only over the cluster bus, which added up to 20-40 ms to a few messages
// in a hundred (BENCHMARKS.md). Any node would deliver it; this one
// delivers it directly. Without a slot map, any node will do.
func (b *pubsubBackplane) publisher(ctx context.Context) goredis.Cmdable {
	if cl, ok := b.client.(*goredis.ClusterClient); ok {
		if m, err := cl.MasterForKey(ctx, b.channel); err == nil {
			return m
		}
	}
	return b.client
}

// Subscribe receives the channel's invalidations. Messages on the channel
// that are not invalidations are dropped and reported to onError.
func (b *pubsubBackplane) Subscribe(onMessage func(cachekit.Invalidation), onError func(error)) (stop func()) {
	return b.recv.subscribe(onMessage, onError)
}

func (b *pubsubBackplane) session(r *receiver, attempt int) error {
	ps := b.client.Subscribe(context.Background())
	if !r.setPubSub(ps) {
		return nil
	}
	defer ps.Close()
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	err := ps.Subscribe(ctx, b.channel)
	cancel()
	if err != nil {
		return fmt.Errorf("subscribing to %s: %w", b.channel, err)
	}
	if err := r.awaitSubscribed(ps, b.channel); err != nil {
		return err
	}
	r.receiving(attempt)
	idle := 0
	for {
		msg, err := r.receive(ps, &idle, nil)
		if err != nil {
			return fmt.Errorf("subscription to %s lost: %w", b.channel, err)
		}
		m, ok := msg.(*goredis.Message)
		if !ok {
			continue // PONGs, subscription confirmations
		}
		inv, err := decodeInvalidation(m.Payload)
		if err != nil {
			r.subs.error(fmt.Errorf("redis backplane: dropped a message on %s: %w", b.channel, err))
			continue
		}
		r.subs.message(inv)
	}
}

// Close ends the subscriptions and, for a backplane opened from a URL,
// closes its client.
func (b *pubsubBackplane) Close() error {
	b.once.Do(func() {
		b.closed.Store(true)
		b.recv.close()
		if b.owned {
			b.err = b.client.Close()
		}
	})
	return b.err
}

// The wire format of a pub/sub invalidation: the magic "ckbp", a version
// byte (1), a flags byte (1: All, 2: Reset), then the origin, the namespace
// and the keys, each a uvarint length and the bytes, the keys preceded by
// their count as a uvarint. Keys are any bytes, so JSON (which replaces
// invalid UTF-8) is no fit.
const (
	wireMagic   = "ckbp"
	wireVersion = 1
	flagAll     = 1
	flagReset   = 2
)

func encodeInvalidation(inv cachekit.Invalidation) []byte {
	n := len(wireMagic) + 2 + 3*binary.MaxVarintLen64 + len(inv.Origin) + len(inv.Namespace)
	for _, k := range inv.Keys {
		n += binary.MaxVarintLen64 + len(k)
	}
	b := make([]byte, 0, n)
	b = append(b, wireMagic...)
	var flags byte
	if inv.All {
		flags |= flagAll
	}
	if inv.Reset {
		flags |= flagReset
	}
	b = append(b, wireVersion, flags)
	b = binary.AppendUvarint(b, uint64(len(inv.Origin)))
	b = append(b, inv.Origin...)
	b = binary.AppendUvarint(b, uint64(len(inv.Namespace)))
	b = append(b, inv.Namespace...)
	b = binary.AppendUvarint(b, uint64(len(inv.Keys)))
	for _, k := range inv.Keys {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
	}
	return b
}

var errBadMessage = errors.New("not a cachekit invalidation")

func decodeInvalidation(s string) (cachekit.Invalidation, error) {
	var inv cachekit.Invalidation
	if !strings.HasPrefix(s, wireMagic) || len(s) < len(wireMagic)+2 {
		return inv, errBadMessage
	}
	if v := s[len(wireMagic)]; v != wireVersion {
		return inv, fmt.Errorf("%w: version %d, want %d", errBadMessage, v, wireVersion)
	}
	flags := s[len(wireMagic)+1]
	if flags&^(flagAll|flagReset) != 0 {
		return inv, fmt.Errorf("%w: unknown flags %#x", errBadMessage, flags)
	}
	inv.All, inv.Reset = flags&flagAll != 0, flags&flagReset != 0
	rest := s[len(wireMagic)+2:]
	uvarint := func() (uint64, bool) {
		var x uint64
		var shift uint
		for i := 0; i < len(rest) && i < binary.MaxVarintLen64; i++ {
			c := rest[i]
			if c < 0x80 {
				if i == binary.MaxVarintLen64-1 && c > 1 {
					return 0, false
				}
				rest = rest[i+1:]
				return x | uint64(c)<<shift, true
			}
			x |= uint64(c&0x7f) << shift
			shift += 7
		}
		return 0, false
	}
	str := func() (string, bool) {
		n, ok := uvarint()
		if !ok || n > uint64(len(rest)) {
			return "", false
		}
		v := rest[:n]
		rest = rest[n:]
		return v, true
	}
	var ok bool
	if inv.Origin, ok = str(); !ok {
		return inv, fmt.Errorf("%w: truncated origin", errBadMessage)
	}
	if inv.Namespace, ok = str(); !ok {
		return inv, fmt.Errorf("%w: truncated namespace", errBadMessage)
	}
	n, ok := uvarint()
	if !ok || n > uint64(len(rest)) { // every key takes at least its length byte
		return inv, fmt.Errorf("%w: bad key count", errBadMessage)
	}
	if n > 0 {
		inv.Keys = make([]string, 0, n)
	}
	for i := uint64(0); i < n; i++ {
		k, ok := str()
		if !ok {
			return inv, fmt.Errorf("%w: truncated key", errBadMessage)
		}
		inv.Keys = append(inv.Keys, k)
	}
	if rest != "" {
		return inv, fmt.Errorf("%w: %d trailing bytes", errBadMessage, len(rest))
	}
	return inv, nil
}
