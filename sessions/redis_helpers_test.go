package sessions

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/config"
)

// The shared redis-server the tests use; CI starts it.
const sharedRedisAddr = "127.0.0.1:6379"

// requireRedis skips the test when no Redis answers at addr, unless the
// CI environment variable is set: there a missing Redis is a failure.
func requireRedis(t testing.TB, addr string) {
	t.Helper()
	if err := pingRedis(addr, time.Second); err != nil {
		msg := fmt.Sprintf("no redis-server at %s (%v): start one with `redis-server --port 6379`", addr, err)
		if os.Getenv("CI") == "" {
			t.Skip(msg + "; skipping (set CI to make this a failure)")
		}
		t.Fatal(msg)
	}
}

// pingRedis sends a PING over a raw connection and expects +PONG.
func pingRedis(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

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
	requireRedis(t, addr)
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
func (rt *redisTest) newStore(t testing.TB, clock *fakeClock, cfg config.Redis) *redisTestStore {
	t.Helper()
	ends := &endLog{}
	client, err := newRedisClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRedis(client, cfg, Options{
		IdleTimeout: testIdle, AbsoluteTimeout: testAbsolute, TouchInterval: testTouch,
		Now: clock.Now, OnEnd: ends.OnEnd, AdminKeys: [][]byte{testAdminKey},
	})
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
		waitFor(t, "the store to subscribe to invalidations", 5*time.Second, r.live.Load)
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

// waitFor polls cond every millisecond until it holds, and fails the test
// if it does not within bound. It returns how long it took.
func waitFor(t testing.TB, what string, bound time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Since(start) > bound {
			t.Fatalf("timed out after %v waiting for %s", bound, what)
		}
		<-tick.C
	}
	return time.Since(start)
}

// ownedRedis is a redis-server the test starts, kills and restarts, on a
// port of its own; it keeps nothing on disk.
type ownedRedis struct {
	t    testing.TB
	bin  string
	port int
	addr string
	cmd  *exec.Cmd
	log  string
}

func startOwnedRedis(t testing.TB) *ownedRedis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("redis-server not installed; skipping (set CI to make this a failure)")
		}
		t.Fatal("redis-server not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	o := &ownedRedis{t: t, bin: bin, port: port, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		log: filepath.Join(t.TempDir(), "redis.log")}
	o.start()
	t.Cleanup(o.kill)
	return o
}

// start runs redis-server on the port and waits until it answers.
func (o *ownedRedis) start() {
	o.t.Helper()
	logf, err := os.OpenFile(o.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		o.t.Fatal(err)
	}
	defer logf.Close()
	// Output goes to an *os.File, so exec starts no copying goroutines.
	cmd := exec.Command(o.bin, "--port", strconv.Itoa(o.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		o.t.Fatalf("start redis-server: %v", err)
	}
	o.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for pingRedis(o.addr, 100*time.Millisecond) != nil {
		if time.Now().After(deadline) {
			o.kill()
			out, _ := os.ReadFile(o.log)
			o.t.Fatalf("redis-server on %s did not answer within 10s:\n%s", o.addr, out)
		}
		time.Sleep(5 * time.Millisecond) // polling a child process's start-up
	}
}

// kill stops the server by PID (SIGKILL: no shutdown work) and reaps it.
func (o *ownedRedis) kill() {
	if o.cmd == nil {
		return
	}
	_ = o.cmd.Process.Kill()
	_ = o.cmd.Wait()
	o.cmd = nil
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
