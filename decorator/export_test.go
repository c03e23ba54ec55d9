package decorator

// SameStripe reports whether the keys of a and b share an invalidation
// stripe, so that a test can make two unrelated keys contend for one.
func SameStripe[K comparable, V any](f *Func[K, V], a, b K) bool {
	ka, err := f.keys.key(a)
	if err != nil {
		panic(err)
	}
	kb, err := f.keys.key(b)
	if err != nil {
		panic(err)
	}
	return f.stripe(ka) == f.stripe(kb)
}

// LeaseKey returns the key under which the lease of k's data key is
// stored.
func LeaseKey[K comparable, V any](f *Func[K, V], k K) string {
	key, err := f.keys.key(k)
	if err != nil {
		panic(err)
	}
	return f.keys.leaseKey(key)
}
