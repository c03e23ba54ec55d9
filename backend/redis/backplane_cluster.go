package redis

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
)

// clusterTracking is tracking mode on a Redis Cluster: one tracking
// backplane per master (each key is written on its master, and tracking is
// per server), kept in step with the cluster's masters by a refresh every
// health interval. Subscriptions and watched caches are handed to every
// master's backplane, and each subscription's functions are serialized, as
// Subscribe promises, though they are called from one goroutine per master.
type clusterTracking struct {
	cluster *goredis.ClusterClient
	opts    BackplaneOptions
	closed  atomic.Bool

	mu      sync.Mutex
	nodes   map[string]*trackingBackplane // by master address
	watched []cachekit.Cache
	subs    map[uint64]*clusterSub
	next    uint64
	started bool
	stop    chan struct{}
	done    chan struct{}
}

type clusterSub struct {
	mu        sync.Mutex // serializes the functions' calls
	stopped   bool
	onMessage func(cachekit.Invalidation)
	onError   func(error)
	stops     map[string]func() // by master address
}

func (s *clusterSub) message(inv cachekit.Invalidation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped && s.onMessage != nil {
		s.onMessage(inv)
	}
}

func (s *clusterSub) error(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped && s.onError != nil {
		s.onError(err)
	}
}

func newClusterTracking(cluster *goredis.ClusterClient, o BackplaneOptions) *clusterTracking {
	return &clusterTracking{
		cluster: cluster,
		opts:    o,
		nodes:   map[string]*trackingBackplane{},
		subs:    map[uint64]*clusterSub{},
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
}

// Publish does nothing in tracking mode; see ModeTracking.
func (b *clusterTracking) Publish(ctx context.Context, _ cachekit.Invalidation) error {
	if b.closed.Load() {
		return fmt.Errorf("redis backplane: %w", cachekit.ErrClosed)
	}
	return ctx.Err()
}

// Watch tracks c's namespace on every master.
func (b *clusterTracking) Watch(c cachekit.Cache) error {
	if b.closed.Load() {
		return fmt.Errorf("redis backplane: %w", cachekit.ErrClosed)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.watched = append(b.watched, c)
	var errs []error
	for _, n := range b.nodes {
		errs = append(errs, n.Watch(c))
	}
	return errors.Join(errs...)
}

// Subscribe subscribes on every master, finding them first.
func (b *clusterTracking) Subscribe(onMessage func(cachekit.Invalidation), onError func(error)) (stop func()) {
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		return func() {}
	}
	sub := &clusterSub{onMessage: onMessage, onError: onError, stops: map[string]func(){}}
	id := b.next
	b.next++
	b.subs[id] = sub
	for addr, n := range b.nodes {
		sub.stops[addr] = n.Subscribe(sub.message, sub.error)
	}
	first := !b.started
	b.started = true
	b.mu.Unlock()
	if first {
		b.refresh(true)
		go b.run()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.subs, id)
			stops := sub.stops
			sub.stops = map[string]func(){}
			b.mu.Unlock()
			for _, s := range stops {
				s()
			}
			sub.mu.Lock()
			sub.stopped = true
			sub.mu.Unlock()
		})
	}
}

func (b *clusterTracking) health() time.Duration { return max(b.opts.Timeout, time.Second) }

func (b *clusterTracking) run() {
	defer close(b.done)
	t := time.NewTicker(b.health())
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.refresh(false)
		}
	}
}

// refresh starts a tracking backplane on every master that has none, and
// closes those of servers that are no longer masters. A master found after
// the first refresh (a failover, a new shard) may have taken writes before
// it was tracked: subscribers get a Reset once it is.
func (b *clusterTracking) refresh(initial bool) {
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.Timeout)
	defer cancel()
	var mu sync.Mutex
	masters := map[string]*goredis.Client{}
	err := b.cluster.ForEachMaster(ctx, func(_ context.Context, c *goredis.Client) error {
		mu.Lock()
		masters[c.Options().Addr] = c
		mu.Unlock()
		return nil
	})
	if err != nil || len(masters) == 0 {
		if err == nil {
			err = errors.New("no masters")
		}
		b.report(fmt.Errorf("redis backplane: listing the cluster's masters: %w", err))
		return
	}
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		return
	}
	var gone []*trackingBackplane
	for addr, n := range b.nodes {
		if masters[addr] == nil {
			gone = append(gone, n)
			delete(b.nodes, addr)
			for _, s := range b.subs {
				delete(s.stops, addr)
			}
		}
	}
	addrs := make([]string, 0, len(masters))
	for addr := range masters {
		if b.nodes[addr] == nil {
			addrs = append(addrs, addr)
		}
	}
	sort.Strings(addrs)
	var errs []error
	for _, addr := range addrs {
		n := newTrackingBackplane(masters[addr], b.opts)
		b.nodes[addr] = n
		for _, c := range b.watched {
			errs = append(errs, n.Watch(c))
		}
		for _, s := range b.subs {
			s.stops[addr] = n.Subscribe(s.message, s.error)
		}
	}
	subs := make([]*clusterSub, 0, len(b.subs))
	for _, s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	for _, n := range gone {
		_ = n.Close()
	}
	if err := errors.Join(errs...); err != nil {
		b.report(err)
	}
	if !initial && len(addrs) > 0 {
		for _, s := range subs {
			s.message(cachekit.Invalidation{Reset: true})
		}
	}
}

func (b *clusterTracking) report(err error) {
	b.mu.Lock()
	subs := make([]*clusterSub, 0, len(b.subs))
	for _, s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	for _, s := range subs {
		s.error(err)
	}
}

// Close closes every master's backplane; the cluster client stays open.
func (b *clusterTracking) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	b.mu.Lock()
	started := b.started
	nodes := b.nodes
	b.nodes = map[string]*trackingBackplane{}
	b.mu.Unlock()
	close(b.stop)
	if started {
		<-b.done
	}
	var errs []error
	for _, n := range nodes {
		errs = append(errs, n.Close())
	}
	return errors.Join(errs...)
}
