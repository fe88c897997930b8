package proxy_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/serve"
	"github.com/gatehouse/gatehouse/sessions"
)

// reloadConfig has routes that cache different things on a session:
// identity headers with and without tokens, and signed assertions for
// two audiences.
const reloadConfig = `external_url: http://127.0.0.1:4180
oidc:
  issuer: http://127.0.0.1:1
  client_id: reload
  client_secret: reload
cookie:
  secret: %s
assertion:
  enabled: true
routes:
  - name: app
    match: {path_prefix: /app/}
    upstream: http://127.0.0.1:9
    allow: {email_domains: [example.com]}
    assertion_audience: https://app.example.com
  - name: api
    match: {path_prefix: /api/}
    upstream: http://127.0.0.1:9
    allow: {email_domains: [example.com]}
    pass_access_token: true
    pass_id_token: true
    assertion_audience: https://api.example.com
`

// TestReload_SessionMemoryBounded: reloads under load must not pin memory
// on every live session. 1000 sessions make requests to two routes after
// each reload; the heap after 20 reloads stays within a small bound of
// the heap after one. Before, every reload added the new configuration's
// header values and assertions to every session (about 1 KB each).
func TestReload_SessionMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the heap over 20 reloads")
	}
	parse := func() *config.Config {
		cfg, err := config.Parse([]byte(fmt.Sprintf(reloadConfig, strings.Repeat("r", 32))), func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	gw, err := serve.NewGateway(parse(), serve.GatewayOptions{Transport: cannedTransport{}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	cookies := make([]string, n)
	for i := range cookies {
		s := &sessions.Session{ID: sessions.NewID(), Subject: fmt.Sprint("user", i), User: fmt.Sprint("user", i),
			Email: fmt.Sprintf("user%d@example.com", i), EmailVerified: true, Groups: []string{"staff"},
			AccessToken: strings.Repeat("a", 200), IDToken: strings.Repeat("i", 400), Created: time.Now()}
		if err := gw.Store.Create(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		c, err := gw.Auth().SessionCookie(s.ID)
		if err != nil {
			t.Fatal(err)
		}
		cookies[i] = c.Name + "=" + c.Value
	}
	traffic := func() {
		for _, c := range cookies {
			for _, path := range []string{"/app/x", "/api/y"} {
				req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:4180"+path, nil)
				req.Header.Set("Cookie", c)
				w := httptest.NewRecorder()
				gw.Handler.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					t.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
				}
			}
		}
	}
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	reload := func() {
		if _, err := gw.Reload(parse()); err != nil {
			t.Fatal(err)
		}
		traffic()
	}
	traffic()
	reload()
	one := heap()
	const reloads = 20
	for range reloads - 1 {
		reload()
	}
	after := heap()
	grown := int64(after) - int64(one)
	t.Logf("heap after 1 reload %d KB, after %d: %d KB (%+d bytes per session per reload)",
		one>>10, reloads, after>>10, grown/int64(n*(reloads-1)))
	// A reload builds a few KB of routes; 1000 sessions × 19 reloads at
	// the old cost would be about 19 MB.
	if grown > 1<<20 {
		t.Errorf("heap grew by %d KB over %d reloads; want under 1 MB", grown>>10, reloads-1)
	}
	runtime.KeepAlive(gw)
}
