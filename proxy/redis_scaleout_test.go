package proxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/proxy"
	"github.com/gatehouse/gatehouse/sessions"
)

// Scale-out: gatehouse replicas on a Sentinel-managed Redis and on a
// Redis Cluster, real servers on loopback that the tests start and kill.
// Under load from several signed-in users a master is killed (SIGKILL):
// every answer is the right user's page, a 503 while no master is known,
// or (for a session Redis lost) the way to the login; never a 500, never
// another user's identity. Revocations still reach every replica within
// one second once the new master serves.

// loadUser is a signed-in user: the session cookie's value and the
// subject the upstream must see for it.
type loadUser struct {
	sub, cookie string
}

// loadStats counts the answers the load got.
type loadStats struct {
	ok, unavailable, login, other atomic.Int64

	mu        sync.Mutex
	wrong     []string // identity mix-ups: strictly none
	odd       []string // other statuses, the first few
	first503  time.Time
	last503   time.Time
	lostUsers map[string]bool // subjects sent to the login
}

func (s *loadStats) String() string {
	return fmt.Sprintf("%d ok, %d 503, %d to the login, %d other", s.ok.Load(), s.unavailable.Load(), s.login.Load(), s.other.Load())
}

// loadClient sends a request as a navigation with only the session
// cookie and follows no redirect; it keeps no cookie jar.
var loadClient = &http.Client{Timeout: 10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// askAs sends GET url as user u and classifies the answer: 200 with u's
// identity at the upstream, 503, 302 to the login, or something else
// (described in the returned string).
func askAs(url, cookieName string, u loadUser) (status int, problem string) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.AddCookie(&http.Cookie{Name: cookieName, Value: u.cookie})
	resp, err := loadClient.Do(req)
	if err != nil {
		return 0, fmt.Sprintf("GET %s as %s: %v", url, u.sub, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	switch resp.StatusCode {
	case http.StatusOK:
		var echo struct {
			Headers http.Header `json:"headers"`
		}
		if err := json.Unmarshal(body, &echo); err != nil {
			return 0, fmt.Sprintf("GET %s as %s: 200 that is not the upstream's echo: %s", url, u.sub, body)
		}
		if got := echo.Headers.Get("X-Forwarded-User"); got != u.sub {
			return -1, fmt.Sprintf("GET %s as %s: the upstream saw X-Forwarded-User %q", url, u.sub, got)
		}
	case http.StatusFound:
		if !strings.Contains(resp.Header.Get("Location"), "/_gatehouse/start?rd=") {
			return 0, fmt.Sprintf("GET %s as %s: 302 to %q", url, u.sub, resp.Header.Get("Location"))
		}
	case http.StatusServiceUnavailable:
	default:
		return 0, fmt.Sprintf("GET %s as %s: status %d: %.200s", url, u.sub, resp.StatusCode, body)
	}
	return resp.StatusCode, ""
}

// runLoad sends requests from one goroutine per user, alternating between
// the gatehouse URLs, until stop is closed (at most 50000 requests each),
// and counts the answers. Call stop to end it; stats are then final.
func runLoad(urls []string, cookieName string, users []loadUser) (stats *loadStats, stop func()) {
	stats = &loadStats{lostUsers: map[string]bool{}}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range 50000 {
				select {
				case <-done:
					return
				default:
				}
				status, problem := askAs(urls[(i+n)%len(urls)]+"/load/"+u.sub, cookieName, u)
				now := time.Now()
				stats.mu.Lock()
				switch status {
				case http.StatusOK:
					stats.ok.Add(1)
				case http.StatusServiceUnavailable:
					stats.unavailable.Add(1)
					if stats.first503.IsZero() {
						stats.first503 = now
					}
					stats.last503 = now
				case http.StatusFound:
					stats.login.Add(1)
					stats.lostUsers[u.sub] = true
				case -1:
					stats.wrong = append(stats.wrong, problem)
				default:
					stats.other.Add(1)
					if len(stats.odd) < 5 {
						stats.odd = append(stats.odd, problem)
					}
				}
				stats.mu.Unlock()
				// A little pause keeps two cores for Redis and the
				// failover; the load still sends hundreds a second.
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	return stats, func() { close(done); wg.Wait() }
}

// check fails the test for a wrong identity or an answer other than 200,
// 503 or the login.
func (s *loadStats) check(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.wrong) > 0 {
		t.Errorf("%d answers carried another user's identity: %v", len(s.wrong), s.wrong[:min(5, len(s.wrong))])
	}
	if s.other.Load() > 0 {
		t.Errorf("%d answers were neither 200, 503 nor the login (never a 500): %v", s.other.Load(), s.odd)
	}
	if s.ok.Load() == 0 {
		t.Error("the load got no 200 at all: it proved nothing")
	}
}

// checkFailover is check, for a load across a failover of a Redis that
// had replicated every session (WAIT): no user was sent to the login,
// and the 503s lasted no longer than a failover (loosely bounded: a
// loaded machine slows it).
func (s *loadStats) checkFailover(t *testing.T) {
	t.Helper()
	s.check(t)
	if len(s.lostUsers) > 0 {
		t.Errorf("users whose sessions WAIT saw replicated were sent to the login: %v", s.lostUsers)
	}
	if !s.first503.IsZero() && s.last503.Sub(s.first503) > 15*time.Second {
		t.Errorf("503s for %v, want the failover's few seconds", s.last503.Sub(s.first503))
	}
}

// signIn signs n users in through gatehouse e, one after the
// other (the provider hands out queued users in order), and returns them.
func signIn(t *testing.T, e *testenv.Env, prefix string, n int) []loadUser {
	t.Helper()
	var users []loadUser
	for i := range n {
		sub := fmt.Sprintf("%s%d", prefix, i)
		b := e.NewBrowser()
		r := b.Login(testenv.User(sub, sub+"@example.com"), "/")
		if r.StatusCode != http.StatusOK || !strings.Contains(r.Body, `"X-Forwarded-User":["`+sub+`"]`) {
			t.Fatalf("sign-in of %s: status %d body %s", sub, r.StatusCode, r.Body)
		}
		users = append(users, loadUser{sub: sub, cookie: b.SessionCookie()})
	}
	return users
}

// churn signs users in one after the other at gatehouse e until stop is
// closed, and returns those whose sign-in was done (their page served)
// when it returned: sessions written up to the failover.
func churn(e *testenv.Env, prefix string, stop <-chan struct{}) (wait func() []loadUser) {
	var out []loadUser
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 2000 {
			select {
			case <-stop:
				return
			default:
			}
			sub := fmt.Sprintf("%s%d", prefix, i)
			b := e.NewBrowser()
			b.Login(testenv.User(sub, sub+"@example.com"), "/")
			if c := b.SessionCookie(); c != "" {
				out = append(out, loadUser{sub: sub, cookie: c})
			}
		}
	}()
	return func() []loadUser {
		<-done
		// A sign-in cut short before the provider's authorize step leaves
		// its user queued: drop it, so later sign-ins get theirs.
		e.IdP.UserQueue.Lock()
		e.IdP.UserQueue.Queue = nil
		e.IdP.UserQueue.Unlock()
		return out
	}
}

// survivors asks for each user's page at url once the store serves
// again and counts those still signed in (200, their identity) and those
// sent to the login; any other answer fails the test.
func survivors(t *testing.T, url, cookieName string, users []loadUser) (kept, lost int) {
	t.Helper()
	for _, u := range users {
		switch status, problem := askAs(url+"/after/"+u.sub, cookieName, u); status {
		case http.StatusOK:
			kept++
		case http.StatusFound:
			lost++
		default:
			t.Errorf("session of %s after the failover: status %d %s", u.sub, status, problem)
		}
	}
	return kept, lost
}

// servesAgain waits (up to bound) until every gatehouse URL serves u's
// page, and returns when it did.
func servesAgain(t *testing.T, urls []string, cookieName string, u loadUser, bound time.Duration) time.Time {
	t.Helper()
	redistest.WaitFor(t, "every replica to serve again", bound, func() bool {
		for _, url := range urls {
			if s, _ := askAs(url+"/probe", cookieName, u); s != http.StatusOK {
				return false
			}
		}
		return true
	})
	return time.Now()
}

// storeOf returns gw's Redis store.
func storeOf(t *testing.T, gw *proxy.Gateway) *sessions.Redis {
	t.Helper()
	st, ok := gw.Store.(*sessions.Redis)
	if !ok {
		t.Fatalf("store is %T, want *sessions.Redis", gw.Store)
	}
	return st
}

// revokedEverywhere signs u out at gatehouse from (the sign-out form),
// after gatehouse to has cached u's session while subscribed to
// invalidations, and checks that to refuses it within one second.
func revokedEverywhere(t *testing.T, e *testenv.Env, from, to string, fromGW, toGW *proxy.Gateway, u loadUser) time.Duration {
	t.Helper()
	redistest.WaitFor(t, "the replica to subscribe to invalidations again", 10*time.Second, storeOf(t, toGW).Live)
	name := e.Gateway.Auth().SessionCookieName()
	// The replica must serve u from its cache, or the test would not
	// show an invalidation.
	redistest.WaitFor(t, "the replica to cache the session", 5*time.Second, func() bool {
		if s, p := askAs(to+"/cache-it", name, u); s != http.StatusOK {
			t.Fatalf("before the sign-out: %d %s", s, p)
		}
		return storeOf(t, toGW).LocalLen() > 0
	})
	b := e.NewBrowser()
	b.SetCookie(name, u.cookie)
	page := b.Get(from+"/_gatehouse/logout", "Accept", "text/html")
	csrf := between(page.Body, `name="csrf" value="`, `"`)
	if page.StatusCode != http.StatusOK || csrf == "" {
		t.Fatalf("sign-out page: status %d body %s", page.StatusCode, page.Body)
	}
	// Right after a failover the store may not reach every shard yet:
	// the sign-out then fails honestly (503, "Sign-out failed") and the
	// user tries again, as its page offers.
	var r *testenv.Response
	tries := 0
	redistest.WaitFor(t, "the sign-out to succeed", 5*time.Second, func() bool {
		tries++
		r = postForm(t, b, from+"/_gatehouse/logout", "csrf="+csrf, from)
		return r.StatusCode != http.StatusServiceUnavailable
	})
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out: status %d, want 303; body %s", r.StatusCode, r.Body)
	}
	if tries > 1 {
		t.Logf("sign-out answered 503 %d times before it succeeded", tries-1)
	}
	signedOut := time.Now()
	redistest.WaitFor(t, "the other replica to refuse the signed-out session", time.Second, func() bool {
		s, _ := askAs(to+"/after-logout", name, u)
		return s == http.StatusFound
	})
	return time.Since(signedOut)
}

// waitAck writes key on the master at addr and waits (WAIT 1 100) for a
// replica to acknowledge it, 50 times: since replication is in order,
// every write before is then on a replica too. It returns the median
// time of a WAIT, the cost of acknowledging each write, and how many
// replicas acknowledged the last one.
func waitAck(t *testing.T, addr, key string) (median time.Duration, acked int64) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx := context.Background()
	var ds []time.Duration
	for i := range 50 {
		if err := c.Set(ctx, key, i, time.Minute).Err(); err != nil {
			t.Fatalf("SET on the master: %v", err)
		}
		start := time.Now()
		n, err := c.Wait(ctx, 1, 100*time.Millisecond).Result()
		if err != nil {
			t.Fatalf("WAIT 1 100: %v", err)
		}
		ds = append(ds, time.Since(start))
		acked = n
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2], acked
}

// TestRedisSentinel_FailoverUnderLoad runs two replicas on a master with
// one replica and three Sentinels, kills the master under load, and
// measures the gap.
func TestRedisSentinel_FailoverUnderLoad(t *testing.T) {
	sen := redistest.StartSentinel(t, 500*time.Millisecond)
	e := testenv.New(t, testenv.Options{YAML: fmt.Sprintf(`session:
  store: redis
  redis:
    sentinel:
      master: %s
      addrs: [%s]
    timeout: 250ms
`, sen.Name, strings.Join(sen.Addrs, ", "))})
	e.RunGateway()
	rep := e.Replica()
	urls := []string{e.URL, rep.URL}
	name := e.Gateway.Auth().SessionCookieName()
	users := signIn(t, e, "user", 6)

	old := sen.Nodes[0].Addr
	// Every session so far is on the replica (WAIT says so): none may be
	// lost. What WAIT would cost on every write is measured on the way.
	ack, n := waitAck(t, old, "gatehouse-test-wait")
	if n != 1 {
		t.Fatalf("WAIT 1 100 acknowledged by %d replicas, want 1", n)
	}
	t.Logf("WAIT 1 100 after a SET on loopback: median %v over 50", ack)

	stats, stopLoad := runLoad(urls, name, users)
	stopChurn := make(chan struct{})
	churned := churn(e, "late", stopChurn)
	time.Sleep(500 * time.Millisecond) // load before the kill
	if stats.unavailable.Load() != 0 {
		t.Errorf("503s before the kill: %v", stats)
	}
	killed := time.Now()
	sen.Nodes[0].Kill()
	close(stopChurn)
	late := churned()
	promoted := sen.WaitFailover(old, 20*time.Second)
	promotedAt := time.Now()
	back := servesAgain(t, urls, name, users[0], 20*time.Second)
	time.Sleep(500 * time.Millisecond) // load after the recovery
	stopLoad()
	stats.checkFailover(t)
	kept, lost := survivors(t, e.URL, name, late)
	gap := time.Duration(0)
	if !stats.first503.IsZero() {
		gap = stats.last503.Sub(stats.first503)
	}
	t.Logf("sentinel failover: load %v; master %s killed, %s promoted %v later, both replicas serving %v after the kill; 503s from %v to %v after the kill (%v); sessions signed in during the load up to the kill: %d kept, %d lost",
		stats, old, promoted, promotedAt.Sub(killed), back.Sub(killed), since(stats.first503, killed), since(stats.last503, killed), gap, kept, lost)

	lat := revokedEverywhere(t, e, e.URL, rep.URL, e.Gateway, rep.Gateway, users[1])
	t.Logf("sign-out at A after the failover refused at B after %v", lat)
	lat = revokedEverywhere(t, e, rep.URL, e.URL, rep.Gateway, e.Gateway, users[2])
	t.Logf("sign-out at B after the failover refused at A after %v", lat)
	if n, _ := metricValue(t, e.Gateway, "gatehouse_requests_total", "outcome", "503"); stats.unavailable.Load() > 0 && n == 0 {
		t.Error("gatehouse_requests_total{outcome=\"503\"} shows none of the failover's 503s")
	}
}

// since returns t - base, or 0 for a zero t.
func since(t, base time.Time) time.Duration {
	if t.IsZero() {
		return 0
	}
	return t.Sub(base).Round(time.Millisecond)
}

// TestRedisCluster_ShardsAndFailoverUnderLoad runs two replicas on a
// Redis Cluster of three masters with a replica each: sessions, their
// sid and sub index sets, the per-user login sets (ucap:) and the used
// login states (state:) spread over the shards, and every operation that
// touches several of them (the per-user bound, revocation by sid and by
// subject) works across shards without CROSSSLOT. Then the master that
// carries the invalidation channel's slot is killed under load.
func TestRedisCluster_ShardsAndFailoverUnderLoad(t *testing.T) {
	cl := redistest.StartCluster(t, 3, 1)
	const prefix = "gh:"
	e := testenv.New(t, testenv.Options{YAML: fmt.Sprintf(`session:
  store: redis
  max_per_user: 3
  redis:
    cluster:
      addrs: [%s]
    key_prefix: %q
    timeout: 250ms
`, strings.Join(cl.Addrs, ", "), prefix)})
	e.RunGateway()
	rep := e.Replica()
	urls := []string{e.URL, rep.URL}
	name := e.Gateway.Auth().SessionCookieName()
	ctx := context.Background()
	users := signIn(t, e, "user", 9)

	// refusedOnBoth waits until both replicas send each of us to the
	// login, one second at most.
	refusedOnBoth := func(t *testing.T, us []loadUser) {
		t.Helper()
		for _, u := range us {
			for _, url := range urls {
				var last string
				deadline := time.Now().Add(time.Second)
				for {
					s, p := askAs(url+"/revoked", name, u)
					if s == http.StatusFound {
						break
					}
					last = fmt.Sprintf("%d %s", s, p)
					if time.Now().After(deadline) {
						t.Fatalf("%s's session still answered at %s a second on: %s\nlogs: %s", u.sub, url, last, e.Logs.String()[max(0, len(e.Logs.String())-3000):])
					}
					time.Sleep(time.Millisecond)
				}
			}
		}
	}
	// signInMany signs sub in n times (with sid, if given) and returns
	// the sessions, oldest first.
	signInMany := func(t *testing.T, sub, sid string, n int) []loadUser {
		t.Helper()
		var out []loadUser
		for range n {
			// The store orders a user's sessions by their creation time
			// (in ms): the test's clock stands still unless moved.
			e.Advance(time.Second)
			b := e.NewBrowser()
			var r *testenv.Response
			if sid != "" {
				r = b.Login(withSID(sub, sid), "/")
			} else {
				r = b.Login(testenv.User(sub, sub+"@example.com"), "/")
			}
			if r.StatusCode != http.StatusOK {
				t.Fatalf("sign-in of %s: status %d body %s", sub, r.StatusCode, r.Body)
			}
			out = append(out, loadUser{sub: sub, cookie: b.SessionCookie()})
		}
		return out
	}

	t.Run("keys on their shards", func(t *testing.T) {
		multi := signInMany(t, "multi", "sid-multi", 5)
		// max_per_user 3: the two oldest are gone, on both replicas.
		refusedOnBoth(t, multi[:2])
		for _, u := range multi[2:] {
			for _, url := range urls {
				if s, p := askAs(url+"/kept", name, u); s != http.StatusOK {
					t.Fatalf("a session within max_per_user: %d %s", s, p)
				}
			}
		}
		kinds := map[string]map[string]bool{} // kind -> masters holding such keys
		for _, m := range cl.Masters(ctx) {
			keys, err := redistest.Keys(m.Addr, prefix)
			if err != nil {
				t.Fatalf("scan %s: %v", m.Addr, err)
			}
			for _, k := range keys {
				if owner := cl.MasterOf(ctx, k); owner != m.Addr {
					t.Errorf("key %s is on %s, its slot's master is %s", k, m.Addr, owner)
				}
				kind, _, _ := strings.Cut(strings.TrimPrefix(k, prefix), ":")
				if kinds[kind] == nil {
					kinds[kind] = map[string]bool{}
				}
				kinds[kind][m.Addr] = true
			}
		}
		for _, kind := range []string{"s", "sid", "sub", "ucap", "state"} {
			if len(kinds[kind]) == 0 {
				t.Errorf("no %s: keys in the cluster", kind)
			}
		}
		if len(kinds["s"]) < 2 {
			t.Errorf("session keys on %d masters, want them spread over several", len(kinds["s"]))
		}
		t.Logf("masters holding each kind of key: %v", func() map[string]int {
			out := map[string]int{}
			for k, ms := range kinds {
				out[k] = len(ms)
			}
			return out
		}())

		t.Run("back-channel logout by sid", func(t *testing.T) {
			if r := postLogout(t, e, logoutToken(t, e, logoutClaims(e, "multi", "sid-multi"))); r.StatusCode != http.StatusOK {
				t.Fatalf("back-channel logout: status %d %s", r.StatusCode, r.Body)
			}
			refusedOnBoth(t, multi[2:])
		})
		t.Run("back-channel logout by subject", func(t *testing.T) {
			many := signInMany(t, "multi2", "", 3)
			if r := postLogout(t, e, logoutToken(t, e, logoutClaims(e, "multi2", ""))); r.StatusCode != http.StatusOK {
				t.Fatalf("back-channel logout: status %d %s", r.StatusCode, r.Body)
			}
			refusedOnBoth(t, many)
		})
	})
	t.Run("sign-out reaches the other replica", func(t *testing.T) {
		lat := revokedEverywhere(t, e, e.URL, rep.URL, e.Gateway, rep.Gateway, users[8])
		t.Logf("sign-out at A refused at B after %v", lat)
	})
	if t.Failed() {
		return
	}

	// Two failovers: first a master that serves sessions but not the
	// invalidation channel's slot (the subscriptions stay up; the slot
	// map must follow), then the channel's master (the replicas'
	// subscriptions are on it and must move).
	channel := cl.MasterOf(ctx, prefix+"invalidate")
	var other string
	most := -1
	for _, m := range cl.Masters(ctx) {
		keys, _ := redistest.Keys(m.Addr, prefix+"s:")
		if m.Addr != channel && len(keys) > most {
			other, most = m.Addr, len(keys)
		}
	}
	t.Logf("first victim %s holds %d session keys", other, most)
	load := users[:8]
	for _, victim := range []string{other, channel} {
		failoverUnderLoad(t, cl, victim, urls, name, load)
		// Two users sign out, one at each replica.
		n := len(load)
		lat := revokedEverywhere(t, e, e.URL, rep.URL, e.Gateway, rep.Gateway, load[n-1])
		t.Logf("sign-out at A after the failover of %s refused at B after %v", victim, lat)
		lat = revokedEverywhere(t, e, rep.URL, e.URL, rep.Gateway, e.Gateway, load[n-2])
		t.Logf("sign-out at B after the failover of %s refused at A after %v", victim, lat)
		load = load[:n-2]
	}
}

// failoverUnderLoad kills the cluster master at victim under load from
// users (after WAIT saw everything replicated) and checks that every
// answer is the right user's page or a 503, that both replicas serve
// every user again without a restart, and that sign-outs still reach the
// other replica within a second.
func failoverUnderLoad(t *testing.T, cl *redistest.Cluster, victim string, urls []string, name string, users []loadUser) {
	t.Helper()
	ctx := context.Background()
	key := ""
	for i := range 10000 {
		if k := fmt.Sprintf("gatehouse-test-wait-%d", i); cl.MasterOf(ctx, k) == victim {
			key = k
			break
		}
	}
	ack, n := waitAck(t, victim, key)
	if n != 1 {
		t.Fatalf("WAIT 1 100 on %s acknowledged by %d replicas, want 1", victim, n)
	}
	stats, stopLoad := runLoad(urls, name, users)
	time.Sleep(500 * time.Millisecond) // load before the kill
	if stats.unavailable.Load() != 0 {
		t.Errorf("503s before the kill: %v", stats)
	}
	killed := time.Now()
	cl.Node(victim).Kill()
	hctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	cl.WaitHealthy(hctx)
	cancel()
	healthy := time.Now()
	var back time.Time
	for _, u := range users {
		back = servesAgain(t, urls, name, u, 20*time.Second)
	}
	time.Sleep(500 * time.Millisecond) // load after the recovery
	stopLoad()
	stats.checkFailover(t)
	t.Logf("cluster failover of %s: load %v; cluster healthy %v after the kill, every user served on both replicas %v after it; 503s from %v to %v after the kill; WAIT 1 100 median %v",
		victim, stats, healthy.Sub(killed), back.Sub(killed), since(stats.first503, killed), since(stats.last503, killed), ack)
}
