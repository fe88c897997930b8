package demo

// End-to-end tests of the demo in a real headless Chromium: the OIDC code
// flow through the development provider's page, the cookies as the
// browser stores them, sign-out (from the app and from the 403 page), the
// back button after sign-out, idle expiry and a denied sign-in. Each test
// starts its own demo and its own browser, bounded by browserTimeout.

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/storage"
	"github.com/chromedp/chromedp"
)

const (
	// browserTimeout bounds one browser test: Chromium's start, every page
	// load and every wait.
	browserTimeout = 30 * time.Second
	// stepTimeout bounds one step (a load, a wait for an element), so that a
	// failing step still leaves time to describe the page it stopped on.
	stepTimeout = 10 * time.Second
	// maxSessionCookieBytes is far below the 4096 bytes browsers keep per
	// cookie: the session cookie carries only a sealed session ID, so
	// growth past this means it carries more than it should.
	maxSessionCookieBytes = 1024
	// appPath is the deep link the tests open before signing in.
	appPath = "/docs/page?x=1"
)

// chromiumPath finds Chromium, or skips the test (fails it when CI is set).
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	const msg = "browser test needs Chromium: no chromium on PATH nor /usr/bin/chromium (on Debian: apt-get install chromium)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// newBrowser starts a headless Chromium with a fresh profile for one test
// and returns the context of its first tab; extra adds to its flags. The
// browser and every action on it end after browserTimeout or when the
// test ends.
func newBrowser(t *testing.T, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	return newBrowserWithin(t, browserTimeout, extra...)
}

// newBrowserWithin is newBrowser with its own bound instead of
// browserTimeout, for tests that must let real time pass.
func newBrowserWithin(t *testing.T, bound time.Duration, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	path := chromiumPath(t)
	ctx, cancel := context.WithTimeout(t.Context(), bound)
	t.Cleanup(cancel)
	actx, acancel := chromedp.NewExecAllocator(ctx, append([]chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()),
	}, extra...)...)
	t.Cleanup(acancel) // after the tab's cleanup below: waits for Chromium to exit
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start Chromium (%s): %v", path, err)
	}
	logConsole(t, bctx)
	return bctx
}

// logConsole logs what the page writes to the console until the test
// ends: script errors, and the browser's own messages such as a request
// blocked by a Content-Security-Policy.
func logConsole(t *testing.T, ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	msgs := chromedp.Console(ctx)
	go func() {
		defer close(done)
		for m, err := range msgs {
			if err != nil {
				return
			}
			t.Logf("browser console: %s %s (%s)", m.Type, m.Text, m.URL)
		}
	}()
	t.Cleanup(func() { cancel(); <-done }) // runs first: no Logf after the test
}

// startDemo starts the demo on free loopback ports with extraYAML appended
// to its configuration.
func startDemo(t *testing.T, extraYAML string) *Demo {
	t.Helper()
	return startDemoWith(t, Options{ExtraYAML: extraYAML})
}

// startDemoWith starts the demo with opts on free loopback ports.
func startDemoWith(t *testing.T, opts Options) *Demo {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	opts.Listen, opts.IdPListen, opts.AppListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	d, err := Start(ctx, opts)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); d.Close() })
	return d
}

// describe tells where the browser is: URL, title and the start of the
// body text, for failure messages.
func describe(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return fmt.Sprintf("(page unavailable: %v)", err)
	}
	title, _ := chromedp.Run(ctx, chromedp.Title())
	body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	body = strings.Join(strings.Fields(body), " ")
	if len(body) > 400 {
		body = body[:400] + "…"
	}
	return fmt.Sprintf("browser at %s\n  title: %q\n  body:  %q", loc, title, body)
}

// failf fails the test now, saying where the browser is.
func failf(t *testing.T, ctx context.Context, format string, args ...any) {
	t.Helper()
	t.Fatalf(format+"\n%s", append(args, describe(ctx))...)
}

// do runs steps under stepTimeout; what names them in a failure.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(sctx, steps...); err != nil {
		failf(t, ctx, "%s: %v", what, err)
	}
}

// load runs steps that start a navigation (a click, a Navigate) and waits
// for the resulting page to load, returning the response of its document
// (after redirects).
func load(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) *network.Response {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(sctx, steps...)
	if err != nil {
		failf(t, ctx, "%s: %v", what, err)
	}
	if resp == nil {
		failf(t, ctx, "%s: no response for the page", what)
	}
	return resp
}

// run runs an action that returns a value under stepTimeout.
func run[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(sctx, a)
	if err != nil {
		failf(t, ctx, "%s: %v", what, err)
	}
	return v
}

// textOf waits until the element with the id is visible and returns its
// text.
func textOf(t *testing.T, ctx context.Context, id string) string {
	t.Helper()
	do(t, ctx, "wait for #"+id, chromedp.WaitVisible(chromedp.ID(id)))
	return strings.TrimSpace(run(t, ctx, "read #"+id, chromedp.Text(chromedp.ID(id))))
}

func location(t *testing.T, ctx context.Context) string {
	t.Helper()
	return run(t, ctx, "read the location", chromedp.Location())
}

// wantLoginPage checks that the browser shows the development provider's
// sign-in page.
func wantLoginPage(t *testing.T, ctx context.Context, d *Demo) {
	t.Helper()
	if loc := location(t, ctx); !strings.HasPrefix(loc, d.IdPURL+"/authorize") {
		failf(t, ctx, "not on the provider's sign-in page (want %s/authorize…)", d.IdPURL)
	}
	do(t, ctx, "wait for the sign-in buttons", chromedp.WaitVisible(chromedp.ID("login-alice")), chromedp.WaitVisible(chromedp.ID("deny")))
}

// browserSignIn opens path on gatehouse, which must send the browser to the
// provider's sign-in page, and presses the user's button there. It returns
// the response of the page the browser ends on.
func browserSignIn(t *testing.T, ctx context.Context, d *Demo, user, path string) *network.Response {
	t.Helper()
	load(t, ctx, "open "+path, chromedp.Navigate(d.URL+path))
	wantLoginPage(t, ctx, d)
	return load(t, ctx, "sign in as "+user, chromedp.Click(chromedp.ID("login-"+user)))
}

// wantAppAsAlice checks that the browser shows the demo app at path,
// through gatehouse, with alice's identity headers.
func wantAppAsAlice(t *testing.T, ctx context.Context, d *Demo, resp *network.Response, path string) {
	t.Helper()
	if loc := location(t, ctx); loc != d.URL+path {
		failf(t, ctx, "location = %s, want the deep link %s", loc, d.URL+path)
	}
	if resp != nil && resp.Status != http.StatusOK {
		failf(t, ctx, "status = %d, want 200", resp.Status)
	}
	for id, want := range map[string]string{
		"path":                 path,
		"h-x-forwarded-user":   "alice",
		"h-x-forwarded-email":  "alice@example.com",
		"h-x-forwarded-groups": "admins,staff",
	} {
		if got := textOf(t, ctx, id); got != want {
			failf(t, ctx, "#%s = %q, want %q", id, got, want)
		}
	}
}

// cookies returns every cookie the browser holds.
func cookies(t *testing.T, ctx context.Context) []*network.Cookie {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	res, err := chromedp.Call(sctx, storage.GetCookies, storage.GetCookiesParams{})
	if err != nil {
		t.Fatalf("read the browser's cookies: %v", err)
	}
	return res.Cookies
}

// cookieNamed returns the browser's cookie with the name and a non-empty
// value, or nil.
func cookieNamed(t *testing.T, ctx context.Context, name string) *network.Cookie {
	t.Helper()
	for _, c := range cookies(t, ctx) {
		if c.Name == name && c.Value != "" {
			return c
		}
	}
	return nil
}

// signOut presses the sign-out button on the page the browser shows
// (gatehouse's confirmation or 403 page) and checks that the browser is
// signed out.
func signOut(t *testing.T, ctx context.Context, d *Demo) {
	t.Helper()
	if got := textOf(t, ctx, "form-submit"); got != "Sign out" {
		failf(t, ctx, "sign-out button reads %q, want %q", got, "Sign out")
	}
	resp := load(t, ctx, "press the sign-out button", chromedp.Click(chromedp.ID("form-submit")))
	wantSignedOutPage(t, ctx, d, resp)
	wantSignedOut(t, ctx, d)
}

// wantSignedOutPage checks that the browser shows gatehouse's signed-out
// page, or the provider's own when it did not send the browser back.
func wantSignedOutPage(t *testing.T, ctx context.Context, d *Demo, resp *network.Response) {
	t.Helper()
	if resp.Status != http.StatusOK {
		failf(t, ctx, "signed-out page: status %d, want 200", resp.Status)
	}
	switch loc := location(t, ctx); {
	case loc == d.URL+"/_gatehouse/signed-out":
		if got := textOf(t, ctx, "title"); got != "You are signed out" {
			failf(t, ctx, "signed-out page title = %q, want %q", got, "You are signed out")
		}
	case strings.HasPrefix(loc, d.IdPURL+"/"):
		if got := textOf(t, ctx, "message"); !strings.Contains(got, "signed out") {
			failf(t, ctx, "provider's page says %q, want it to say signed out", got)
		}
	default:
		failf(t, ctx, "after sign-out at %s, want gatehouse's signed-out page or the provider's logout page", loc)
	}
}

// wantSignedOut checks that the browser holds no session cookie and that
// opening the app leads to the provider's sign-in page.
func wantSignedOut(t *testing.T, ctx context.Context, d *Demo) {
	t.Helper()
	name := d.Gateway.Auth().SessionCookieName()
	if c := cookieNamed(t, ctx, name); c != nil {
		failf(t, ctx, "session cookie %s still in the browser after sign-out (%d bytes)", name, c.Size)
	}
	load(t, ctx, "open the app again", chromedp.Navigate(d.URL+"/"))
	wantLoginPage(t, ctx, d)
}

func TestBrowser_DeepLinkSignIn(t *testing.T) {
	d := startDemo(t, "")
	ctx := newBrowser(t)

	resp := browserSignIn(t, ctx, d, "alice", appPath)
	wantAppAsAlice(t, ctx, d, resp, appPath)
}

func TestBrowser_CookieAttributes(t *testing.T) {
	d := startDemo(t, "")
	ctx := newBrowser(t)
	ga := d.Gateway.Auth()

	// The login cookie lives during the sign-in only, and is sealed too.
	load(t, ctx, "open "+appPath, chromedp.Navigate(d.URL+appPath))
	wantLoginPage(t, ctx, d)
	if cookieNamed(t, ctx, ga.LoginCookieName()) == nil {
		t.Errorf("no login cookie %s while on the provider's page; cookies: %s", ga.LoginCookieName(), cookieList(cookies(t, ctx)))
	}
	for _, c := range cookies(t, ctx) {
		if strings.Contains(c.Value, "eyJ") {
			t.Errorf("cookie %s (path %s) holds a JWT during the sign-in", c.Name, c.Path)
		}
	}
	resp := load(t, ctx, "sign in as alice", chromedp.Click(chromedp.ID("login-alice")))
	wantAppAsAlice(t, ctx, d, resp, appPath)

	all := cookies(t, ctx)
	total := 0
	for _, c := range all {
		total += int(c.Size)
	}
	t.Logf("the browser holds %d cookies, %d bytes in all: %s", len(all), total, cookieList(all))

	if c := cookieNamed(t, ctx, ga.LoginCookieName()); c != nil {
		t.Errorf("login cookie %s still set after the sign-in completed (%d bytes, path %s)", c.Name, c.Size, c.Path)
	}
	sc := cookieNamed(t, ctx, ga.SessionCookieName())
	if sc == nil {
		t.Fatalf("no session cookie %s; cookies: %s", ga.SessionCookieName(), cookieList(all))
	}
	t.Logf("session cookie %s: %d bytes", sc.Name, sc.Size)
	for _, c := range []struct {
		attr      string
		got, want any
	}{
		{"HttpOnly", sc.HTTPOnly, true},
		{"SameSite", sc.SameSite, network.CookieSameSiteLax},
		{"Path", sc.Path, "/"},
		{"Secure", sc.Secure, false}, // the demo is plain http on loopback
		{"Domain (host-only)", sc.Domain, "127.0.0.1"},
	} {
		if c.got != c.want {
			t.Errorf("session cookie %s = %v, want %v", c.attr, c.got, c.want)
		}
	}
	if sc.Size >= maxSessionCookieBytes {
		t.Errorf("session cookie is %d bytes, want well under 4096 (< %d): it should carry only a sealed session ID", sc.Size, maxSessionCookieBytes)
	}

	// No cookie carries a token or the session ID in the clear.
	req, _ := http.NewRequest(http.MethodGet, d.URL+"/", nil)
	req.AddCookie(&http.Cookie{Name: sc.Name, Value: sc.Value})
	s, err := ga.Session(req)
	if err != nil {
		t.Fatalf("the browser's session cookie opens no session on the server: %v", err)
	}
	secrets := map[string]string{
		"a JWT (eyJ…)":            "eyJ",
		"the ID token":            s.IDToken,
		"the access token":        s.AccessToken,
		"the refresh token":       s.RefreshToken,
		"the session ID (hex)":    hex.EncodeToString(s.ID[:]),
		"the session ID (HEX)":    strings.ToUpper(hex.EncodeToString(s.ID[:])),
		"the session ID (base64)": base64.RawStdEncoding.EncodeToString(s.ID[:]),
		"the session ID (b64url)": base64.RawURLEncoding.EncodeToString(s.ID[:]),
		"the session ID (raw)":    string(s.ID[:]),
	}
	for _, c := range all {
		for what, secret := range secrets {
			if secret != "" && strings.Contains(c.Value, secret) {
				t.Errorf("cookie %s (domain %s, path %s) contains %s in the clear", c.Name, c.Domain, c.Path, what)
			}
		}
	}
}

// cookieList describes cookies without their values.
func cookieList(cs []*network.Cookie) string {
	var b strings.Builder
	for i, c := range cs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (%s%s, %d bytes)", c.Name, c.Domain, c.Path, c.Size)
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

func TestBrowser_SignOutFromApp(t *testing.T) {
	d := startDemo(t, "")
	ctx := newBrowser(t)

	resp := browserSignIn(t, ctx, d, "alice", appPath)
	wantAppAsAlice(t, ctx, d, resp, appPath)

	load(t, ctx, "follow the app's sign-out link", chromedp.Click(chromedp.ID("signout")))
	if loc := location(t, ctx); loc != d.URL+"/_gatehouse/logout" {
		failf(t, ctx, "sign-out link led to %s, want gatehouse's confirmation page", loc)
	}
	if got := textOf(t, ctx, "title"); got != "Sign out?" {
		failf(t, ctx, "confirmation page title = %q, want %q", got, "Sign out?")
	}
	if got := textOf(t, ctx, "detail"); !strings.Contains(got, "alice") {
		failf(t, ctx, "confirmation page does not name alice: %q", got)
	}
	signOut(t, ctx, d)
}

func TestBrowser_SignOutFromForbiddenPage(t *testing.T) {
	d := startDemo(t, "")
	ctx := newBrowser(t)

	resp := browserSignIn(t, ctx, d, "bob", appPath)
	if resp.Status != http.StatusForbidden {
		failf(t, ctx, "bob: status %d, want 403", resp.Status)
	}
	// No route allows bob, so the callback refuses him and starts no
	// session: the 403 page is the callback's, and it signs him out at the
	// provider, so that he can sign in with another account.
	if loc := location(t, ctx); !strings.HasPrefix(loc, d.URL+"/_gatehouse/callback?") {
		failf(t, ctx, "bob's 403 page is at %s, want the callback", loc)
	}
	if got := textOf(t, ctx, "title"); got != "You do not have access" {
		failf(t, ctx, "403 page title = %q, want %q", got, "You do not have access")
	}
	if got := textOf(t, ctx, "detail"); !strings.Contains(got, "bob") {
		failf(t, ctx, "403 page does not name bob: %q", got)
	}
	if c := cookieNamed(t, ctx, d.Gateway.Auth().SessionCookieName()); c != nil {
		failf(t, ctx, "bob, whom no route allows, got a session cookie")
	}
	if got := textOf(t, ctx, "action"); got != "Sign out at the identity provider" {
		failf(t, ctx, "403 page link reads %q, want %q", got, "Sign out at the identity provider")
	}
	resp = load(t, ctx, "follow the sign-out link", chromedp.Click(chromedp.ID("action")))
	wantSignedOutPage(t, ctx, d, resp)
	wantSignedOut(t, ctx, d)
}

// appIdentityJS returns the identity the demo app's page shows (its email
// cell), or "" when the page is not the app's.
const appIdentityJS = `(() => {
	const cell = document.getElementById("h-x-forwarded-email");
	return document.title === "gatehouse demo app" ? "app page: " + (cell ? cell.textContent : "") : "";
})()`

// back goes back in the tab's history to entry, as the back button does
// (Page.navigateToHistoryEntry, which chromedp.NavigateBack sends too), and
// returns the type of the navigation that showed the page: "Navigation"
// when the page was asked for again, "BackForwardCacheRestore" when the
// browser showed the page it kept, without a request. chromedp.NavigateBack
// itself waits for a load event, which a restore never fires.
func back(t *testing.T, ctx context.Context, entry *page.NavigationEntry) page.NavigationType {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	ev, err := chromedp.Run(sctx, chromedp.WaitEvent(page.FrameNavigated,
		func(ev page.EventFrameNavigated) bool { return ev.Frame != nil && ev.Frame.ParentID == "" },
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, page.NavigateToHistoryEntry, page.NavigateToHistoryEntryParams{EntryID: entry.ID})
			return err
		})))
	if err != nil {
		failf(t, ctx, "go back to %s: %v", entry.URL, err)
	}
	if ev.Type != page.NavigationTypeBackForwardCacheRestore {
		do(t, ctx, "wait for the page after going back to "+entry.URL, chromedp.WaitReady(chromedp.CSS("body")))
	}
	return ev.Type
}

func TestBrowser_BackAfterSignOut(t *testing.T) {
	d := startDemo(t, "")
	ctx := newBrowser(t)

	resp := browserSignIn(t, ctx, d, "alice", appPath)
	wantAppAsAlice(t, ctx, d, resp, appPath)
	load(t, ctx, "follow the app's sign-out link", chromedp.Click(chromedp.ID("signout")))
	resp = load(t, ctx, "press the sign-out button", chromedp.Click(chromedp.ID("form-submit")))
	wantSignedOutPage(t, ctx, d, resp)

	// Press back until the app's history entry: no step may show the app.
	for step := 1; ; step++ {
		h := run(t, ctx, "read the history", chromedp.NavigationEntries())
		if h.CurrentIndex <= 0 || step > len(h.Entries) {
			failf(t, ctx, "went back %d times without reaching the app's history entry %s", step-1, d.URL+appPath)
		}
		entry := h.Entries[h.CurrentIndex-1]
		how := back(t, ctx, entry)
		shown := run(t, ctx, "read the page", chromedp.Evaluate[string](appIdentityJS))
		if shown != "" {
			failf(t, ctx, "gatehouse bug: back #%d after sign-out to %s shows the app (%s), served by a %s navigation; "+
				"want the sign-in page or one of gatehouse's pages, since the session and its cookie are gone, "+
				"the app sent Cache-Control: no-store and the sign-out sent Clear-Site-Data: \"cache\"", step, entry.URL, shown, how)
		}
		t.Logf("back #%d to %s: %s navigation, now at %s", step, entry.URL, how, location(t, ctx))
		if entry.URL == d.URL+appPath {
			break
		}
	}
	// Going back to the app's page asks gatehouse again, which sends the
	// signed-out browser to sign in.
	wantLoginPage(t, ctx, d)
	if c := cookieNamed(t, ctx, d.Gateway.Auth().SessionCookieName()); c != nil {
		t.Errorf("session cookie back in the browser after the back button (%d bytes)", c.Size)
	}
}

func TestBrowser_IdleExpiry(t *testing.T) {
	const idle = 2 * time.Second
	d := startDemo(t, fmt.Sprintf("session:\n  idle_timeout: %s\n  absolute_timeout: 1m\n", idle))
	ctx := newBrowser(t)

	resp := browserSignIn(t, ctx, d, "alice", appPath)
	wantAppAsAlice(t, ctx, d, resp, appPath)
	lastSeen := time.Now()

	// Make no request until more than idle_timeout has passed and the
	// server has ended the session (its sweeper runs every idle/2), polling
	// under a deadline.
	deadline := lastSeen.Add(5 * idle)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for time.Since(lastSeen) <= idle || d.Gateway.Store.Len() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the session is still stored %s after the last request; idle_timeout is %s", time.Since(lastSeen).Round(time.Millisecond), idle)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
	t.Logf("no request for %s: the server has ended the session", time.Since(lastSeen).Round(time.Millisecond))

	load(t, ctx, "reload the app after the idle timeout", chromedp.Reload())
	wantLoginPage(t, ctx, d)
	if c := cookieNamed(t, ctx, d.Gateway.Auth().SessionCookieName()); c != nil {
		t.Errorf("the expired session's cookie is still in the browser (%d bytes)", c.Size)
	}
	// Signing in again returns to the page the reload asked for.
	resp = load(t, ctx, "sign in again as alice", chromedp.Click(chromedp.ID("login-alice")))
	wantAppAsAlice(t, ctx, d, resp, appPath)
}

func TestBrowser_DenyOnProvider(t *testing.T) {
	d := startDemo(t, "")
	ctx := newBrowser(t)

	load(t, ctx, "open "+appPath, chromedp.Navigate(d.URL+appPath))
	wantLoginPage(t, ctx, d)
	resp := load(t, ctx, "press Deny", chromedp.Click(chromedp.ID("deny")))
	if resp.Status != http.StatusForbidden {
		failf(t, ctx, "after Deny: status %d, want 403", resp.Status)
	}
	if loc := location(t, ctx); !strings.HasPrefix(loc, d.URL+"/_gatehouse/callback") {
		failf(t, ctx, "after Deny at %s, want gatehouse's callback", loc)
	}
	if got := textOf(t, ctx, "title"); got != "Sign-in cancelled" {
		failf(t, ctx, "title = %q, want %q", got, "Sign-in cancelled")
	}
	if got := textOf(t, ctx, "action"); got != "Sign in again" {
		failf(t, ctx, "link reads %q, want %q", got, "Sign in again")
	}
	if rid := textOf(t, ctx, "request-id"); rid == "" {
		failf(t, ctx, "no request ID on the page")
	}

	// The link starts a new sign-in that returns to the deep link.
	load(t, ctx, "follow Sign in again", chromedp.Click(chromedp.ID("action")))
	wantLoginPage(t, ctx, d)
	resp = load(t, ctx, "sign in as alice", chromedp.Click(chromedp.ID("login-alice")))
	wantAppAsAlice(t, ctx, d, resp, appPath)
}

// TestBrowser_TLS signs in through `gatehouse demo -tls` over HTTPS, with
// Chromium trusting the demo's certificate by its SPKI fingerprint as the
// demo tells a person to: the page is a secure context served over h2,
// and the session cookie is __Host- and Secure.
func TestBrowser_TLS(t *testing.T) {
	d := startDemoWith(t, Options{TLS: true})
	if !strings.HasPrefix(d.URL, "https://127.0.0.1:") || d.SPKIFingerprint == "" {
		t.Fatalf("demo URL %s, fingerprint %q; want https and a fingerprint", d.URL, d.SPKIFingerprint)
	}
	ctx := newBrowser(t, chromedp.Flag("ignore-certificate-errors-spki-list", d.SPKIFingerprint))

	resp := browserSignIn(t, ctx, d, "alice", appPath)
	wantAppAsAlice(t, ctx, d, resp, appPath)
	if resp.Protocol != "h2" {
		t.Errorf("the app page came over %q, want h2", resp.Protocol)
	}
	if resp.SecurityState != "secure" {
		t.Errorf("security state %q, want secure (the SPKI fingerprint trusted)", resp.SecurityState)
	}
	page := run(t, ctx, "read the page's security", chromedp.Evaluate[string](
		`location.protocol + " " + (window.isSecureContext ? "secure-context" : "insecure-context")`))
	if page != "https: secure-context" {
		failf(t, ctx, "page reports %q, want \"https: secure-context\"", page)
	}
	name := d.Gateway.Auth().SessionCookieName()
	if !strings.HasPrefix(name, "__Host-") {
		t.Errorf("session cookie name %q, want the __Host- prefix over https", name)
	}
	sc := cookieNamed(t, ctx, name)
	if sc == nil {
		t.Fatalf("no session cookie %s in the browser; cookies: %s", name, cookieList(cookies(t, ctx)))
	}
	if !sc.Secure || !sc.HTTPOnly || sc.Path != "/" || sc.Domain != "127.0.0.1" {
		t.Errorf("session cookie %s: Secure %v HttpOnly %v Path %q Domain %q; want Secure, HttpOnly, / and host-only", sc.Name, sc.Secure, sc.HTTPOnly, sc.Path, sc.Domain)
	}
}

// TestBrowser_TLSUntrusted: without the fingerprint, Chromium refuses the
// demo's certificate, so the test above trusts it for the flag's sake and
// not because the browser accepts anything.
func TestBrowser_TLSUntrusted(t *testing.T) {
	d := startDemoWith(t, Options{TLS: true})
	ctx := newBrowser(t)
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	_, err := chromedp.RunResponse(sctx, chromedp.Navigate(d.URL+"/"))
	if err == nil || !strings.Contains(err.Error(), "ERR_CERT_AUTHORITY_INVALID") {
		failf(t, ctx, "opening %s without trusting the certificate: err = %v, want net::ERR_CERT_AUTHORITY_INVALID", d.URL, err)
	}
}
