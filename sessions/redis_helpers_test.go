package sessions

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/redistest"
)

// redisTest is one test's corner of a Redis: a random key prefix, an
// admin client to look at the raw data, and cleanup of every key under
// the prefix at the end.
type redisTest struct {
	addr   string
	prefix string
	admin  *redis.Client
}

func newRedisTest(t testing.TB, addr string) *redisTest {
	t.Helper()
	redistest.Require(t, addr)
	var b [6]byte
	_, _ = rand.Read(b[:])
	rt := &redisTest{addr: addr, prefix: "gatehouse-test-" + hex.EncodeToString(b[:]) + ":",
		admin: redis.NewClient(&redis.Options{Addr: addr, MaxRetries: 1, DialerRetries: 1})}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if keys, err := rt.scan(ctx); err == nil && len(keys) > 0 {
			for i := 0; i < len(keys); i += 1000 {
				rt.admin.Unlink(ctx, keys[i:min(i+1000, len(keys))]...)
			}
		}
		_ = rt.admin.Close()
	})
	return rt
}

// scan returns every key under the test's prefix.
func (rt *redisTest) scan(ctx context.Context) ([]string, error) {
	var keys []string
	it := rt.admin.Scan(ctx, 0, escapeGlob(rt.prefix)+"*", 1000).Iterator()
	for it.Next(ctx) {
		keys = append(keys, it.Val())
	}
	return keys, it.Err()
}

// keys returns every key under the test's prefix, or fails the test.
func (rt *redisTest) keys(t testing.TB) []string {
	t.Helper()
	keys, err := rt.scan(t.Context())
	if err != nil {
		t.Fatalf("scan %s*: %v", rt.prefix, err)
	}
	return keys
}

// storeConfig is the store configuration of the tests: a short timeout
// and a local cache.
func (rt *redisTest) storeConfig() config.Redis {
	n := 1000
	return config.Redis{URL: "redis://" + rt.addr + "/0", KeyPrefix: rt.prefix, Timeout: 250 * time.Millisecond, LocalCache: &n}
}

// testAdminKey seals the admin descriptions in test stores.
var testAdminKey = []byte("0123456789abcdef0123456789abcdef")

// redisTestStore is a Redis store (one replica) with the shared fake
// clock and an OnEnd recorder.
type redisTestStore struct {
	*Redis
	clock *fakeClock
	ends  *endLog
	rt    *redisTest
}

// newStore starts a replica: its own client and local cache, running
// until the test ends. With a local cache it waits until subscribed.
// Each of more changes the store's options.
func (rt *redisTest) newStore(t testing.TB, clock *fakeClock, cfg config.Redis, more ...func(*Options)) *redisTestStore {
	t.Helper()
	ends := &endLog{}
	client, err := newRedisClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		IdleTimeout: testIdle, AbsoluteTimeout: testAbsolute, TouchInterval: testTouch,
		Now: clock.Now, OnEnd: ends.OnEnd, AdminKeys: [][]byte{testAdminKey},
	}
	for _, f := range more {
		f(&opts)
	}
	r, err := NewRedis(client, cfg, opts)
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = r.Close()
	})
	ts := &redisTestStore{Redis: r, clock: clock, ends: ends, rt: rt}
	if r.cache != nil {
		redistest.WaitFor(t, "the store to subscribe to invalidations", 5*time.Second, r.live.Load)
	}
	return ts
}

// create stores a fresh session for sub and sid, created now.
func (ts *redisTestStore) create(t testing.TB, sub, sid string) *Session {
	t.Helper()
	s := &Session{
		ID:           NewID(),
		Issuer:       "https://idp.example.com",
		Subject:      sub,
		User:         sub,
		Email:        sub + "@example.com",
		IdPSessionID: sid,
		AccessToken:  "access-" + sub,
		Created:      ts.clock.Now(),
	}
	if err := ts.Create(t.Context(), s); err != nil {
		t.Fatalf("Create(sub %q): %v", sub, err)
	}
	return s
}

// cached reports whether the replica's local cache holds id's session.
func (ts *redisTestStore) cached(id ID) bool {
	_, ok := ts.cache.get(lookupDigest(id))
	return ok
}

// expireTime returns the raw PEXPIRETIME of id's key: Unix ms, or -2 when
// the key does not exist.
func (ts *redisTestStore) expireTime(t testing.TB, id ID) int64 {
	t.Helper()
	ms, err := ts.rt.admin.Do(t.Context(), "pexpiretime", ts.sessionKey(lookupDigest(id))).Int64()
	if err != nil {
		t.Fatalf("PEXPIRETIME: %v", err)
	}
	return ms
}

// checkNoGoroutineLeak fails t unless the number of goroutines falls
// back to base within 10s (go-redis ends its dialers asynchronously).
func checkNoGoroutineLeak(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), base, buf)
		}
		time.Sleep(10 * time.Millisecond) // polling for goroutines to exit
	}
}

// isUnavailable reports whether err says the store could not answer.
func isUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }

// hasLine reports whether s has a line containing every part.
func hasLine(s string, parts ...string) bool {
	for line := range strings.SplitSeq(s, "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			return true
		}
	}
	return false
}

// newSilentServer listens on a loopback port, accepts connections and
// never answers, like a Redis that hangs. It returns its address.
func newSilentServer(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(io.Discard, c) // until the client hangs up
			}()
		}
	}()
	return ln.Addr().String()
}
