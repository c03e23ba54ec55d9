package memcached

import (
	"crypto/md5"
	"encoding/binary"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/bradfitz/gomemcache/memcache"
)

// pointsPerServer is how many places each server takes on the ring
// (libketama's 160: 40 MD5 digests of 4 points each).
const pointsPerServer = 160

// Ring is a consistent-hashing memcache.ServerSelector in the ketama style:
// every server takes 160 points on a 32-bit ring, placed by the MD5 digests
// of "address-0" to "address-39" (4 points per digest), and a key goes to
// the first point at or after the first 4 bytes (little-endian) of its MD5.
// Adding a server to n takes over about 1/(n+1) of the keys, all of them
// from the other servers; removing one moves only that server's keys.
// gomemcache's own ServerList hashes modulo the number of servers instead,
// which moves most keys whenever the list changes.
//
// Two kinds of keys are placed specially, so that a cachekit namespace has
// no single point of failure (see "Namespaces and Clear" in the package
// documentation). A namespaced key, "~" + ns + ":" + generation + ":" +
// rest with a base-36 generation, is placed by "~" + ns + "::" + rest: a
// Clear, which changes the generation, moves no key to another server. A
// namespace's generation key for one server, "~" + ns + ":gen@" + address,
// goes to the server with that address, when the Ring has it.
//
// Placement depends on the address strings as given, not on their order and
// not on what they resolve to, so every client configured with the same
// addresses agrees on where a key lives. Names are resolved when a
// connection is dialed. A Ring is immutable and safe for concurrent use;
// build a new one (and a new client) to change the servers.
//
// Use it with gomemcache's NewFromSelector:
//
//	ring, err := memcached.NewRing("10.0.0.1:11211", "10.0.0.2:11211")
//	client := memcache.NewFromSelector(ring)
type Ring struct {
	names  []string
	addrs  []net.Addr
	byName map[string]int // position in names
	points []ringPoint    // sorted by hash, then by server name
}

type ringPoint struct {
	hash   uint32
	server int
}

var _ memcache.ServerSelector = (*Ring)(nil)

// NewRing returns a Ring over the given servers: "host:port" for TCP (an IPv6
// host in brackets), or a path containing '/' for a Unix socket. It returns
// an error when there are no servers, when one is malformed, or when one is
// listed twice.
func NewRing(servers ...string) (*Ring, error) {
	if len(servers) == 0 {
		return nil, fmt.Errorf("memcached: NewRing: %w", memcache.ErrNoServers)
	}
	r := &Ring{
		names:  make([]string, len(servers)),
		addrs:  make([]net.Addr, len(servers)),
		points: make([]ringPoint, 0, len(servers)*pointsPerServer),
		byName: make(map[string]int, len(servers)),
	}
	seen := make(map[string]bool, len(servers))
	for i, s := range servers {
		addr, err := parseServer(s)
		if err != nil {
			return nil, err
		}
		if seen[s] {
			return nil, fmt.Errorf("memcached: NewRing: server %q listed twice", s)
		}
		seen[s] = true
		r.names[i], r.addrs[i] = s, addr
		r.byName[s] = i
		for j := 0; j < pointsPerServer/4; j++ {
			d := md5.Sum([]byte(s + "-" + strconv.Itoa(j)))
			for k := 0; k < 4; k++ {
				r.points = append(r.points, ringPoint{binary.LittleEndian.Uint32(d[4*k:]), i})
			}
		}
	}
	sort.Slice(r.points, func(a, b int) bool {
		pa, pb := r.points[a], r.points[b]
		if pa.hash != pb.hash {
			return pa.hash < pb.hash
		}
		return r.names[pa.server] < r.names[pb.server]
	})
	return r, nil
}

// parseServer checks one server address and returns it as a net.Addr that
// is resolved when dialed.
func parseServer(s string) (net.Addr, error) {
	if strings.Contains(s, "/") {
		return ringAddr{network: "unix", addr: s}, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return nil, fmt.Errorf("memcached: server %q: want host:port or a Unix socket path: %w", s, err)
	}
	if host == "" {
		return nil, fmt.Errorf("memcached: server %q: empty host", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return nil, fmt.Errorf("memcached: server %q: bad port", s)
	}
	return ringAddr{network: "tcp", addr: s}, nil
}

// ringAddr is a server address as configured; dialing resolves it.
type ringAddr struct{ network, addr string }

func (a ringAddr) Network() string { return a.network }
func (a ringAddr) String() string  { return a.addr }

// PickServer returns the server that holds key. It implements
// memcache.ServerSelector.
func (r *Ring) PickServer(key string) (net.Addr, error) {
	if len(r.addrs) == 1 {
		return r.addrs[0], nil
	}
	return r.addrs[r.serverOf(key)], nil
}

// serverOf returns the position in r.addrs of key's server, placing
// namespaced keys and generation keys as the type's comment says.
func (r *Ring) serverOf(key string) int {
	if len(key) > 0 && key[0] == marker {
		if i := strings.IndexByte(key, ':'); i > 0 {
			rest := key[i+1:]
			if strings.HasPrefix(rest, genRoute) {
				if s, ok := r.byName[rest[len(genRoute):]]; ok {
					return s
				}
			} else if j := base36Run(rest); j > 0 && j < len(rest) && rest[j] == ':' {
				var buf [maxServerKey + 16]byte
				b := append(buf[:0], key[:i+1]...)
				return r.indexBytes(append(b, rest[j:]...))
			}
		}
	}
	return r.index(key)
}

// base36Run returns the length of the run of base-36 digits (0-9, a-z)
// that s starts with.
func base36Run(s string) int {
	for i := 0; i < len(s); i++ {
		if b := s[i]; !(b >= '0' && b <= '9' || b >= 'a' && b <= 'z') {
			return i
		}
	}
	return len(s)
}

// index returns the position in r.addrs of the server of key, hashed as it
// is.
func (r *Ring) index(key string) int {
	return r.indexBytes([]byte(key))
}

func (r *Ring) indexBytes(key []byte) int {
	d := md5.Sum(key)
	h := binary.LittleEndian.Uint32(d[:4])
	i := sort.Search(len(r.points), func(i int) bool { return r.points[i].hash >= h })
	if i == len(r.points) {
		i = 0
	}
	return r.points[i].server
}

// Each calls f for every server, in the order given to NewRing, stopping at
// the first error. It implements memcache.ServerSelector.
func (r *Ring) Each(f func(net.Addr) error) error {
	for _, a := range r.addrs {
		if err := f(a); err != nil {
			return err
		}
	}
	return nil
}

// Servers returns the server addresses, in the order given to NewRing.
func (r *Ring) Servers() []string {
	return append([]string(nil), r.names...)
}
