package stats

import "github.com/cachekit/cachekit"

// TimedGets returns how many Get calls s has timed.
func TimedGets(s *Stats) uint64 {
	var n uint64
	for i := range s.hist[cachekit.OpGet].b {
		n += s.hist[cachekit.OpGet].b[i].Load()
	}
	return n
}
