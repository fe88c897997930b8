package proxy_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// TestHeldForm_RedisAcrossReplicas: with the redis store, a form held by
// replica A is replayed by replica B, which the sign-in's callback
// reaches, exactly once: a replay of the callback with a saved copy of
// the login cookie, at either replica, sends nothing more, and no form is
// left in Redis.
func TestHeldForm_RedisAcrossReplicas(t *testing.T) {
	redistest.Require(t, redistest.Addr)
	prefix := redistest.KeyPrefix(t, redistest.Addr)
	app := &formApp{}
	e := testenv.New(t, testenv.Options{Upstream: app, YAML: fmt.Sprintf(`session:
  idle_timeout: 10m
  preserve_posts: true
  preserve_posts_max_bytes: 1000
  store: redis
  redis:
    url: redis://%s/0
    key_prefix: %q
    timeout: 250ms
allow:
  any_user: true
`, redistest.Addr, prefix)})
	e.RunGateway()
	rep := e.Replica()

	b := expiredBrowser(t, e, "alice")
	r := postFormWith(b, e, "/notes/save?draft=1", "title=Hello&text=my+long+text", "Origin", e.URL)
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST without a session on A: %d %s, want 303 to the provider", r.StatusCode, r.Body)
	}
	savedLogin := b.Cookie(e.Gateway.Auth().LoginCookieName())
	e.IdP.QueueUser(testenv.User("alice", "alice@example.com"))
	az := b.Get(r.Header.Get("Location"))
	cb := az.Header.Get("Location")
	if az.StatusCode != http.StatusFound || !strings.HasPrefix(cb, e.URL+"/_gatehouse/callback?") {
		t.Fatalf("provider: %d to %q, want a redirect to A's callback", az.StatusCode, cb)
	}
	onB := rep.URL + strings.TrimPrefix(cb, e.URL)
	final := rep.Browser(b).Navigate(onB)
	if final.StatusCode != http.StatusOK || final.Body != "saved by the app" {
		t.Fatalf("callback on B: %d %q (hops %v), want the app's answer to the form held on A", final.StatusCode, final.Body, final.Hops)
	}
	posts := app.posts()
	want := formSeen{http.MethodPost, "/notes/save?draft=1", "alice", "application/x-www-form-urlencoded", e.URL, "title=Hello&text=my+long+text"}
	if len(posts) != 1 || posts[0] != want {
		t.Fatalf("app got %+v, want exactly %+v", posts, want)
	}
	if !strings.Contains(rep.Logs.String(), `"event":"form_replayed"`) {
		t.Errorf("B did not log the replay:\n%s", rep.Logs.String())
	}

	// The callback again, with the login cookie as it was: on A and on B.
	for _, target := range []string{cb, onB} {
		req, _ := http.NewRequest(http.MethodGet, target, nil)
		req.Header.Set("Cookie", e.Gateway.Auth().LoginCookieName()+"="+savedLogin)
		req.Header.Set("Accept", "text/html")
		if resp := e.NewBrowser().Do(req); resp.StatusCode == http.StatusOK {
			t.Errorf("replayed callback %s: status 200", target)
		}
	}
	if n := len(app.posts()); n != 1 {
		t.Errorf("app got %d POSTs after the replays, want 1", n)
	}
	keys, err := redistest.Keys(redistest.Addr, prefix+"form:")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Errorf("held forms left in Redis: %q", keys)
	}
}
