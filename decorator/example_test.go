package decorator_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
	"github.com/cachekit/cachekit/decorator"
)

type User struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

var ErrNoUser = errors.New("no such user")

// Memoize a function: the decorated function has the same signature, so
// call sites don't change.
func Example() {
	ctx := context.Background()
	mem := memory.New(nil)
	defer mem.Close()
	users := cachekit.NewTyped[User](mem, &cachekit.TypedOptions{TTL: 10 * time.Minute})

	queries := 0
	loadUser := func(ctx context.Context, id int) (User, error) {
		queries++ // stands for a database query
		return User{ID: id, Name: fmt.Sprint("user-", id)}, nil
	}
	getUser := decorator.Cached(users, loadUser, &decorator.Options[int]{Name: "user"})

	for range 3 {
		u, err := getUser(ctx, 42)
		if err != nil {
			panic(err)
		}
		fmt.Println(u.Name)
	}
	fmt.Println("queries:", queries)
	// Output:
	// user-42
	// user-42
	// user-42
	// queries: 1
}

// New returns the decorated function with helpers: Invalidate after a
// write, Refresh to reload now, Key to find the cache key.
func ExampleNew() {
	ctx := context.Background()
	mem := memory.New(nil)
	defer mem.Close()
	names := map[int]string{1: "Ada"}
	user := decorator.New(cachekit.NewTyped[string](mem, nil),
		func(_ context.Context, id int) (string, error) { return names[id], nil },
		&decorator.Options[int]{Name: "user-name"})

	fmt.Println(user.Call(ctx, 1))
	names[1] = "Ada Lovelace"
	fmt.Println(user.Call(ctx, 1)) // still cached
	user.Invalidate(ctx, 1)
	fmt.Println(user.Call(ctx, 1))
	fmt.Println(user.Key(1))
	// Output:
	// Ada <nil>
	// Ada <nil>
	// Ada Lovelace <nil>
	// user-name:i:1 <nil>
}

// Fail-safe and negative caching: a failing database doesn't fail callers
// while a stale value is at hand, and a "not found" is remembered briefly.
func ExampleOptions_failSafe() {
	ctx := context.Background()
	mem := memory.New(nil)
	defer mem.Close()
	down := false
	getUser := decorator.Cached(cachekit.NewTyped[User](mem, nil),
		func(_ context.Context, id int) (User, error) {
			switch {
			case down:
				return User{}, errors.New("database unreachable")
			case id != 42:
				return User{}, ErrNoUser
			}
			return User{ID: id, Name: "Ada"}, nil
		},
		&decorator.Options[int]{
			Name:             "user",
			TTL:              20 * time.Millisecond,
			FailSafeMaxStale: time.Hour,
			NegativeError:    ErrNoUser,
			NegativeTTL:      time.Minute,
		})

	u, _ := getUser(ctx, 42)
	fmt.Println(u.Name)
	time.Sleep(30 * time.Millisecond) // the value is stale now
	down = true
	u, err := getUser(ctx, 42)
	fmt.Println(u.Name, err)
	down = false
	_, err = getUser(ctx, 7)
	fmt.Println(err)
	// Output:
	// Ada
	// Ada <nil>
	// no such user
}

// Batch functions load only what the cache misses.
func ExampleCachedMany() {
	ctx := context.Background()
	mem := memory.New(nil)
	defer mem.Close()
	getNames := decorator.CachedMany(cachekit.NewTyped[string](mem, nil),
		func(_ context.Context, ids []int) (map[int]string, error) {
			fmt.Println("loading", len(ids), "ids")
			out := map[int]string{}
			for _, id := range ids {
				out[id] = fmt.Sprint("user-", id)
			}
			return out, nil
		},
		&decorator.Options[int]{Name: "user-names"})

	getNames(ctx, []int{1, 2})
	names, _ := getNames(ctx, []int{1, 2, 3})
	fmt.Println(names[1], names[3])
	// Output:
	// loading 2 ids
	// loading 1 ids
	// user-1 user-3
}

// With a local tier on the Typed, hits come from process memory, and a
// Backplane keeps two processes coherent: here two Typed caches over one
// shared cache stand for two processes, and NewMemoryBackplane for a Redis
// backplane (cachekit.OpenBackplane(ctx, "redis://host:6379/0?channel=app")).
func Example_localTier() {
	ctx := context.Background()
	shared := memory.New(nil) // stands for Redis or Memcached
	defer shared.Close()
	bp := cachekit.NewMemoryBackplane()
	defer bp.Close()
	names := map[int]string{1: "Ada"}
	load := func(_ context.Context, id int) (string, error) { return names[id], nil }
	process := func() *decorator.Func[int, string] {
		typed := cachekit.NewTyped[string](shared, &cachekit.TypedOptions{
			Local:     &cachekit.LocalOptions{TTL: time.Minute},
			Backplane: bp,
		})
		return decorator.New(typed, load, &decorator.Options[int]{Name: "user-name"})
	}
	a, b := process(), process()

	name, _ := a.Call(ctx, 1) // loads, stores, keeps it in a's memory
	fmt.Println("a:", name)
	a.Wait()                 // the value is stored in the background
	name, _ = b.Call(ctx, 1) // reads the shared cache once, keeps it in b's memory
	fmt.Println("b:", name)

	names[1] = "Ada Lovelace"
	a.Refresh(ctx, 1) // stores the new value and publishes: b drops its copy
	name, _ = b.Call(ctx, 1)
	fmt.Println("b after a's refresh:", name)
	a.Wait()
	b.Wait()
	// Output:
	// a: Ada
	// b: Ada
	// b after a's refresh: Ada Lovelace
}
