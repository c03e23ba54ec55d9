package memory

import (
	"context"
	"fmt"
	"net/url"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/internal/urlparam"
)

// schemes are the URL schemes this package registers with
// [cachekit.DefaultURLMux].
var schemes = []string{"mem", "memory"}

func init() {
	for _, scheme := range schemes {
		cachekit.DefaultURLMux().Register(scheme, cachekit.URLOpenerFunc(openURL))
	}
}

// openURL opens a cache from a mem:// or memory:// URL (see the package
// documentation for its parameters). The cache owns its storage.
func openURL(ctx context.Context, u *url.URL) (cachekit.Cache, error) {
	o, err := optionsFromURL(u)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return New(o), nil
}

// optionsFromURL reads Options from u, rejecting anything it does not know.
func optionsFromURL(u *url.URL) (*Options, error) {
	if u.Opaque != "" || u.User != nil || u.Host != "" || (u.Path != "" && u.Path != "/") || u.Fragment != "" {
		return nil, fmt.Errorf("%w: %s:// takes no host, path or user, only query parameters, as in mem://?max_bytes=64MiB&namespace=app",
			cachekit.ErrInvalidURL, u.Scheme)
	}
	p := urlparam.New(u)
	o := &Options{
		Namespace:    p.String("namespace", ""),
		MaxBytes:     p.Bytes("max_bytes", 0),
		MaxEntries:   p.Int("max_entries", 0),
		MaxValueSize: p.Bytes("max_value_size", 0),
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	return o, nil
}
