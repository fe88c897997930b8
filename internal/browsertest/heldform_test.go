package browsertest_test

// Browser proofs of session.preserve_posts: a form filled in before the
// idle timeout and sent after it reaches the app once, after sign-in; a
// cross-site form post is neither let through nor held.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	bt "github.com/gatehouse/gatehouse/internal/browsertest"
	"github.com/gatehouse/gatehouse/sessions"
)

const heldYAML = `session:
  idle_timeout: 10m
  absolute_timeout: 1h
  preserve_posts: true
`

// fillForm opens the app's form as the signed-in browser and types into
// it, without sending it.
func fillForm(t *testing.T, ctx context.Context, s *bt.Stack, title, text string) {
	t.Helper()
	bt.Load(t, ctx, "open the form", chromedp.Navigate(s.URL+"/form"))
	bt.Do(t, ctx, "fill the form", chromedp.SendKeys(chromedp.ID("title"), title), chromedp.SendKeys(chromedp.ID("text"), text))
}

// wantOnePost checks that the app received exactly one POST: the form's
// fields, as alice, with Origin origin.
func wantOnePost(t *testing.T, a *app, origin, title, text string) {
	t.Helper()
	p := a.posts()
	if len(p) != 1 {
		t.Fatalf("the app received %d POSTs, want exactly 1: %+v", len(p), p)
	}
	if p[0].path != "/notes/save?draft=1" || p[0].user != "alice" || p[0].origin != origin ||
		p[0].form.Get("title") != title || p[0].form.Get("text") != text {
		t.Errorf("the app received %+v, want /notes/save?draft=1 from %q as alice with title %q and text %q", p[0], origin, title, text)
	}
	t.Logf("the app received the form once, as alice, with Origin %q", p[0].origin)
}

// TestBrowser_HeldForm: alice fills a form, her session passes its idle
// timeout, she presses Save; gatehouse holds the post and sends her to
// sign in; after she signs in the app receives the post exactly once and
// she sees its answer. Reloading that page sends nothing again.
func TestBrowser_HeldForm(t *testing.T) {
	const title, text = "Quarterly report", "a long text typed before the timeout"

	t.Run("expired session: replayed after sign-in", func(t *testing.T) {
		a := &app{}
		s := bt.StartStack(t, bt.StackOptions{YAML: heldYAML, App: a})
		ctx := bt.New(t)
		s.SignIn(t, ctx, "alice", s.URL+"/form")
		fillForm(t, ctx, s, title, text)
		s.Clock.Advance(11 * time.Minute)

		bt.Load(t, ctx, "press Save after the idle timeout", chromedp.Click(chromedp.ID("save")))
		bt.WantLoginPage(t, ctx, s.IdPURL)
		if n := len(a.posts()); n != 0 {
			t.Fatalf("the app received %d POSTs without a session", n)
		}
		if n := s.Gateway.Auth().HeldForms(); n != 1 {
			t.Fatalf("gatehouse holds %d forms, want 1", n)
		}
		resp := bt.Load(t, ctx, "sign in again as alice", chromedp.Click(chromedp.ID("login-alice")))
		if got := bt.TextOf(t, ctx, "saved"); resp.Status != http.StatusOK || got != fmt.Sprintf("Saved %q for alice", title) {
			bt.Failf(t, ctx, "after sign-in: status %d, page says %q; want the app's answer to the form", resp.Status, got)
		}
		wantOnePost(t, a, s.URL, title, text)
		if n := s.Gateway.Auth().HeldForms(); n != 0 {
			t.Errorf("gatehouse still holds %d forms after the replay", n)
		}

		// The page is the callback's answer: reloading it asks the
		// callback again, whose login state is used up.
		bt.Load(t, ctx, "reload the app's answer", chromedp.Reload())
		if n := len(a.posts()); n != 1 {
			bt.Failf(t, ctx, "the app received %d POSTs after a reload, want still 1", n)
		}
		bt.Load(t, ctx, "open the app", chromedp.Navigate(s.URL+"/one"))
		wantApp(t, ctx, s.URL+"/one", "alice")
	})

	// Once the store has swept the expired session (the memory store
	// sweeps every idle_timeout/2; Redis drops the key at the idle
	// limit), gatehouse no longer knows whose form it was: it replays
	// nothing by itself and shows the fields back with a button, and
	// alice's press sends them once.
	t.Run("swept session: sent again at the user's press", func(t *testing.T) {
		a := &app{}
		s := bt.StartStack(t, bt.StackOptions{YAML: heldYAML, App: a})
		ctx := bt.New(t)
		s.SignIn(t, ctx, "alice", s.URL+"/form")
		fillForm(t, ctx, s, title, text)
		s.Clock.Advance(11 * time.Minute)
		if n := s.Gateway.Store.(*sessions.Memory).Sweep(); n != 1 {
			t.Fatalf("the sweep ended %d sessions, want alice's 1", n)
		}

		bt.Load(t, ctx, "press Save after the session was swept", chromedp.Click(chromedp.ID("save")))
		bt.WantLoginPage(t, ctx, s.IdPURL)
		bt.Load(t, ctx, "sign in again as alice", chromedp.Click(chromedp.ID("login-alice")))
		if got := bt.TextOf(t, ctx, "title"); got != "Your form was not resubmitted" {
			bt.Failf(t, ctx, "after sign-in: title %q, want the notice", got)
		}
		if n := len(a.posts()); n != 0 {
			bt.Failf(t, ctx, "the app received %d POSTs before alice confirmed", n)
		}
		bt.Load(t, ctx, "press Send the form again", chromedp.Click(chromedp.ID("form-submit")))
		if got := bt.TextOf(t, ctx, "saved"); got != fmt.Sprintf("Saved %q for alice", title) {
			bt.Failf(t, ctx, "page says %q; want the app's answer to the form", got)
		}
		// The post carries gatehouse's Origin, as the automatic replay
		// does, so that an app checking Origin against CSRF takes it.
		wantOnePost(t, a, s.URL, title, text)
	})
}

// attackerPage serves, on another loopback site (localhost, where
// gatehouse is at 127.0.0.1), a page that posts a form to target as soon
// as it loads. It returns the page's URL.
func attackerPage(t *testing.T, target string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>prize</title><form id="f" method="post" action="%s"><input name="title" value="pwned"><input name="text" value="by another site"></form>
<script>addEventListener("load", () => document.getElementById("f").submit())</script>`, target)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return "http://localhost:" + port + "/prize"
}

// TestBrowser_CrossSitePost: a page on another site that posts a form to
// gatehouse never gets it to the app, neither with a live session (the
// SameSite=Lax cookie is not sent, so there is no session to use) nor
// with an expired one (gatehouse does not hold a cross-site post, so
// signing in replays nothing).
func TestBrowser_CrossSitePost(t *testing.T) {
	for _, tc := range []struct {
		name    string
		expired bool
	}{{"live session", false}, {"expired session", true}} {
		t.Run(tc.name, func(t *testing.T) {
			a := &app{}
			s := bt.StartStack(t, bt.StackOptions{YAML: heldYAML, App: a})
			ctx := bt.New(t)
			s.SignIn(t, ctx, "alice", s.URL+"/one")
			wantApp(t, ctx, s.URL+"/one", "alice")
			if tc.expired {
				s.Clock.Advance(11 * time.Minute)
			}

			evil := attackerPage(t, s.URL+"/notes/save?draft=1")
			bt.Do(t, ctx, "open the other site's page", chromedp.Navigate(evil))
			if loc := bt.WaitLoaded(t, ctx, s.URL, s.IdPURL); !strings.HasPrefix(loc, s.URL+"/notes/save") {
				bt.Failf(t, ctx, "the cross-site post led to %s, want gatehouse's answer at /notes/save: gatehouse held it and sent the browser to sign in", loc)
			}
			status := bt.Run(t, ctx, "read the answer's status", chromedp.Evaluate[int](`performance.getEntriesByType("navigation")[0].responseStatus`))
			if status != http.StatusUnauthorized {
				bt.Failf(t, ctx, "the cross-site post got status %d, want gatehouse's 401 (no session, not held)", status)
			}
			if n := len(a.posts()); n != 0 {
				bt.Failf(t, ctx, "the app received %d POSTs from another site", n)
			}
			if n := s.Gateway.Auth().HeldForms(); n != 0 {
				t.Fatalf("gatehouse holds %d forms from another site", n)
			}

			// Whatever alice does next, the post does not reach the app.
			bt.Load(t, ctx, "open the app", chromedp.Navigate(s.URL+"/one"))
			if tc.expired {
				bt.WantLoginPage(t, ctx, s.IdPURL)
				bt.Load(t, ctx, "sign in again as alice", chromedp.Click(chromedp.ID("login-alice")))
			}
			wantApp(t, ctx, s.URL+"/one", "alice")
			if n := len(a.posts()); n != 0 {
				t.Errorf("the app received %d POSTs after alice went on", n)
			}
			if strings.Contains(s.Logs.String(), `"form_held"`) {
				t.Error("gatehouse logged a held form")
			}
		})
	}
}
