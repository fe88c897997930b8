// Package browsertest drives gatehouse from a real headless Chromium for
// tests: starting the browser (skipped without Chromium, failed under CI),
// bounded steps that describe the page when they fail, the browser's
// cookie jar, and a Stack of the development provider, gatehouse and an
// app on loopback with a clock the test moves. It is imported by tests
// only.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/storage"
	"github.com/chromedp/chromedp"
)

const (
	// BrowserTimeout bounds one browser: Chromium's start, every page
	// load and every wait.
	BrowserTimeout = 30 * time.Second
	// StepTimeout bounds one step (a load, a wait for an element), so that
	// a failing step still leaves time to describe the page it stopped on.
	StepTimeout = 10 * time.Second
)

// ChromiumPath finds Chromium, or skips the test (fails it when CI is set).
func ChromiumPath(t testing.TB) string {
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

// New starts a headless Chromium, its own process with a fresh profile,
// and returns the context of its first tab; extra adds to its flags. Two
// calls are two browsers that share nothing (cookies, cache, storage).
// The browser and every action on it end after BrowserTimeout or when
// the test ends.
func New(t testing.TB, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	return NewWithin(t, BrowserTimeout, extra...)
}

// NewWithin is New with its own bound instead of BrowserTimeout, for
// tests that must let real time pass.
func NewWithin(t testing.TB, bound time.Duration, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	path := ChromiumPath(t)
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
func logConsole(t testing.TB, ctx context.Context) {
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

// Describe tells where the browser is: URL, title and the start of the
// body text, for failure messages.
func Describe(ctx context.Context) string {
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

// Failf fails the test now, saying where the browser is.
func Failf(t testing.TB, ctx context.Context, format string, args ...any) {
	t.Helper()
	t.Fatalf(format+"\n%s", append(args, Describe(ctx))...)
}

// Do runs steps under StepTimeout; what names them in a failure.
func Do(t testing.TB, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, StepTimeout)
	defer cancel()
	if err := chromedp.Do(sctx, steps...); err != nil {
		Failf(t, ctx, "%s: %v", what, err)
	}
}

// Load runs steps that start a navigation (a click, a Navigate) and waits
// for the resulting page to load, returning the response of its document
// (after redirects).
func Load(t testing.TB, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) *network.Response {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, StepTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(sctx, steps...)
	if err != nil {
		Failf(t, ctx, "%s: %v", what, err)
	}
	if resp == nil {
		Failf(t, ctx, "%s: no response for the page", what)
	}
	return resp
}

// Run runs an action that returns a value under StepTimeout.
func Run[T any](t testing.TB, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, StepTimeout)
	defer cancel()
	v, err := chromedp.Run(sctx, a)
	if err != nil {
		Failf(t, ctx, "%s: %v", what, err)
	}
	return v
}

// TextOf waits until the element with the id is visible and returns its
// text.
func TextOf(t testing.TB, ctx context.Context, id string) string {
	t.Helper()
	Do(t, ctx, "wait for #"+id, chromedp.WaitVisible(chromedp.ID(id)))
	return strings.TrimSpace(Run(t, ctx, "read #"+id, chromedp.Text(chromedp.ID(id))))
}

// Location returns the URL the browser shows.
func Location(t testing.TB, ctx context.Context) string {
	t.Helper()
	return Run(t, ctx, "read the location", chromedp.Location())
}

// Cookies returns every cookie the browser holds, as its jar has them.
func Cookies(t testing.TB, ctx context.Context) []*network.Cookie {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, StepTimeout)
	defer cancel()
	res, err := chromedp.Call(sctx, storage.GetCookies, storage.GetCookiesParams{})
	if err != nil {
		t.Fatalf("read the browser's cookies: %v", err)
	}
	return res.Cookies
}

// CookieNamed returns the browser's cookie with the name and a non-empty
// value, or nil.
func CookieNamed(t testing.TB, ctx context.Context, name string) *network.Cookie {
	t.Helper()
	for _, c := range Cookies(t, ctx) {
		if c.Name == name && c.Value != "" {
			return c
		}
	}
	return nil
}

// CookieList describes cookies without their values.
func CookieList(cs []*network.Cookie) string {
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

// WaitLoaded waits until the browser shows a loaded page whose URL starts
// with one of prefixes, for navigations the page starts itself (a script
// submitting a form), which no step of the test awaits. It returns the
// page's URL.
func WaitLoaded(t testing.TB, ctx context.Context, prefixes ...string) string {
	t.Helper()
	deadline := time.Now().Add(StepTimeout)
	for {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		state, err := chromedp.Run(sctx, chromedp.Evaluate[string](`location.href + " " + document.readyState`))
		cancel()
		if loc, ok := strings.CutSuffix(state, " complete"); err == nil && ok {
			for _, p := range prefixes {
				if strings.HasPrefix(loc, p) {
					return loc
				}
			}
		}
		if time.Now().After(deadline) {
			Failf(t, ctx, "no loaded page at %s within %s (last: %q, %v)", strings.Join(prefixes, " or "), StepTimeout, state, err)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			Failf(t, ctx, "waiting for %s: %v", strings.Join(prefixes, " or "), ctx.Err())
		}
	}
}
