package proxy_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/serve"
	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/sessions"
)

// flakyForms is a memory store whose held-form calls fail as a Redis
// that does not answer would.
type flakyForms struct {
	*sessions.Memory
	holdFails, takeFails bool
}

func (f flakyForms) HoldForm(ctx context.Context, id, sealed []byte, ttl time.Duration) (bool, error) {
	if f.holdFails {
		return false, sessions.ErrUnavailable
	}
	return f.Memory.HoldForm(ctx, id, sealed, ttl)
}

func (f flakyForms) TakeForm(ctx context.Context, id []byte) ([]byte, error) {
	if f.takeFails {
		return nil, sessions.ErrUnavailable
	}
	return f.Memory.TakeForm(ctx, id)
}

// TestHeldForm_StoreFailsClosed: a store that cannot hold the form, or
// cannot give it back after the sign-in, gets a page that says so; it is
// never read as "no form", and nothing reaches the app.
func TestHeldForm_StoreFailsClosed(t *testing.T) {
	for _, tc := range []struct {
		name       string
		store      flakyForms
		wantStatus int
		wantText   string
	}{
		{"hold fails", flakyForms{holdFails: true}, http.StatusServiceUnavailable, "could not be kept"},
		{"take fails", flakyForms{takeFails: true}, http.StatusServiceUnavailable, "could not be resubmitted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, app := newHeldEnv(t, heldYAML)
			mem, err := sessions.NewMemory(100, sessions.Options{IdleTimeout: 10 * time.Minute, AbsoluteTimeout: 8 * time.Hour, Now: e.Clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			tc.store.Memory = mem
			logs := &testenv.LogBuffer{}
			gw, err := serve.NewGateway(e.Config, serve.GatewayOptions{Store: tc.store, Now: e.Clock.Now,
				Logger: slog.New(slog.NewJSONHandler(logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(gw.Server().Handler)
			t.Cleanup(srv.Close)
			b := e.NewBrowser()
			external, _ := url.Parse(e.URL)

			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/notes/save", strings.NewReader("title=Hello"))
			req.Host = external.Host
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Accept", "text/html")
			req.Header.Set("Origin", e.URL)
			r := b.Do(req)
			if tc.store.holdFails {
				if r.StatusCode != tc.wantStatus || !strings.Contains(r.Body, tc.wantText) {
					t.Fatalf("POST while the store cannot hold it: %d %s, want %d saying %q", r.StatusCode, r.Body, tc.wantStatus, tc.wantText)
				}
				if !strings.Contains(logs.String(), "store_unavailable") {
					t.Errorf("the failure was not logged:\n%s", logs.String())
				}
				return
			}
			if r.StatusCode != http.StatusSeeOther {
				t.Fatalf("POST without a session: %d %s, want 303", r.StatusCode, r.Body)
			}
			e.IdP.QueueUser(testenv.User("alice", "alice@example.com"))
			az := b.Get(r.Header.Get("Location"))
			cb := az.Header.Get("Location")
			if !strings.HasPrefix(cb, e.URL+"/_gatehouse/callback?") {
				t.Fatalf("provider answered %d to %q", az.StatusCode, cb)
			}
			final := b.Navigate(srv.URL + strings.TrimPrefix(cb, e.URL))
			if final.StatusCode != tc.wantStatus || !strings.Contains(final.Body, tc.wantText) {
				t.Fatalf("callback while the store cannot give the form back: %d %s, want %d saying %q", final.StatusCode, final.Body, tc.wantStatus, tc.wantText)
			}
			if n := len(app.posts()); n != 0 {
				t.Errorf("app got %d POSTs", n)
			}
		})
	}
}
