package proxy_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauth2-proxy/mockoidc"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// tokenLifetime makes the provider issue access tokens of the given
// lifetime in seconds. testenv converts mockoidc's expires_in from
// nanoseconds to seconds after this middleware runs, so it writes
// nanoseconds.
func tokenLifetime(seconds float64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return testenv.RewriteTokenResponse(next, func(m map[string]any) bool {
			m["expires_in"] = seconds * 1e9
			return true
		})
	}
}

// TestRefresh_ShortTokensDoNotStorm: a provider issuing 20s tokens,
// shorter than session.refresh_before (1m), under concurrent requests on
// every simulated second for two minutes. Tokens are refreshed after half
// their lifetime (10s, which is also the floor), once per session however
// many requests are due: at 10s, 20s, ... 120s after login, 12 refreshes.
// Before, every request after the first refresh refreshed again.
func TestRefresh_ShortTokensDoNotStorm(t *testing.T) {
	e := testenv.New(t, testenv.Options{IdPMiddleware: tokenLifetime(20), YAML: "routes:\n  - upstream: ${UPSTREAM}\n    pass_access_token: true\n", NoUpstream: true})
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com"), "/")
	const workers, seconds = 4, 120
	for sec := 1; sec <= seconds; sec++ {
		e.Advance(time.Second)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var bad []int
		for range workers {
			wg.Go(func() {
				for range 3 {
					req, _ := http.NewRequest(http.MethodGet, e.URL+"/", nil)
					resp, err := b.Client.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						mu.Lock()
						bad = append(bad, resp.StatusCode)
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		if len(bad) > 0 {
			t.Fatalf("second %d: statuses %v, want 200", sec, bad)
		}
	}
	if n, want := e.Grants("refresh_token"), seconds/10; n != want {
		t.Errorf("refreshes in %ds of 20s tokens: %d, want %d (one per 10s)", seconds, n, want)
	}
}

// TestRefresh_AbsurdLifetimeClamped: expires_in of 634 years (a provider
// sending it in the wrong unit) is clamped to 24h and logged once, not
// per request.
func TestRefresh_AbsurdLifetimeClamped(t *testing.T) {
	e := testenv.New(t, testenv.Options{IdPMiddleware: tokenLifetime(20e9),
		YAML: "session:\n  idle_timeout: 30h\n  absolute_timeout: 48h\n"})
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com"), "/")
	for range 5 {
		wantUpstream(t, b, "/")
	}
	if n := strings.Count(e.Logs.String(), `"event":"token_lifetime_clamped"`); n != 1 {
		t.Errorf("clamp logged %d times, want once:\n%s", n, e.Logs.String())
	}
	req, _ := http.NewRequest(http.MethodGet, e.URL+"/", nil)
	req.AddCookie(&http.Cookie{Name: e.Gateway.Auth().SessionCookieName(), Value: b.SessionCookie()})
	s, err := e.Gateway.Auth().Session(req)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.AccessExpiry.Sub(s.Created); got != 24*time.Hour {
		t.Errorf("access token lifetime %v, want clamped to 24h", got)
	}
	// The clamped token is refreshed a refresh_before ahead of its
	// clamped expiry, as any other.
	e.Advance(24*time.Hour - 59*time.Second)
	wantUpstream(t, b, "/")
	if n := e.Grants("refresh_token"); n != 1 {
		t.Errorf("refreshes at the clamped expiry: %d, want 1", n)
	}
}

// TestRefresh_InvalidRequestServesUntilExpiry: a provider answering
// invalid_request (as after a restart that forgot its grants) leaves the
// session serving until its access token expires, with attempts spaced
// by the back-off (10s, then 20s), then requires a login.
func TestRefresh_InvalidRequestServesUntilExpiry(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com"), "/")
	invalid := func() {
		e.IdP.QueueError(&mockoidc.ServerError{Code: http.StatusBadRequest, Error: mockoidc.InvalidRequest, Description: "unknown grant"})
	}
	e.Advance(accessTTL - 30*time.Second) // due: refresh_before is 1m
	invalid()
	wantUpstream(t, b, "/")
	e.Advance(5 * time.Second) // within the 10s back-off: no call
	wantUpstream(t, b, "/")
	if n := e.Grants("refresh_token"); n != 1 {
		t.Fatalf("token calls within the back-off: %d, want 1", n)
	}
	e.Advance(10 * time.Second) // 15s before expiry: second attempt
	invalid()
	wantUpstream(t, b, "/")
	wantUpstream(t, b, "/")
	if n := e.Grants("refresh_token"); n != 2 {
		t.Fatalf("token calls after the back-off: %d, want 2", n)
	}
	e.Advance(16 * time.Second) // 1s past expiry, back-off (20s) still running
	wantLogin(t, b, "/")
	if n := e.Grants("refresh_token"); n != 2 {
		t.Errorf("token calls: %d, want 2", n)
	}
	if n := e.Gateway.Store.Len(); n != 0 {
		t.Errorf("store holds %d sessions after the tokens expired unrefreshed", n)
	}
	if !strings.Contains(e.Logs.String(), `"reason":"refresh_failed"`) {
		t.Error("no session_end log with reason refresh_failed")
	}
}
