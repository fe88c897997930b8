package demo

// Device-bound sessions (session.device_binding) in a real headless
// Chromium with Device Bound Session Credentials (DBSC) turned on, against
// the demo over HTTPS: the browser registers a key after sign-in
// (Network.deviceBoundSessionEventOccurred shows it), keeps the short-lived
// bound cookie fresh across several of its lifetimes, and the cookies
// copied into a second browser profile work only until the bound cookie's
// server-side expiry, while the first browser stays signed in. The same
// across two gatehouse replicas on Redis, and browsers without DBSC in
// prefer and require.
//
// These tests let real time pass (the browser refreshes by its own clock),
// so the bound cookie's lifetime is a few seconds.

import (
	"context"
	"errors"
	"fmt"
	bt "github.com/gatehouse/gatehouse/internal/browsertest"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/storage"
	"github.com/chromedp/chromedp"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/serve"
	"github.com/gatehouse/gatehouse/internal/tlsserve"
)

const (
	// dbscFeatures turns on Device Bound Session Credentials in Chromium
	// without an origin-trial token and without a refresh quota, with
	// software keys (no TPM needed).
	dbscFeatures = "DeviceBoundSessions:RequireOriginTrialTokens/false/RefreshQuota/false," +
		"EnableBoundSessionCredentialsSoftwareKeysForManualTesting"
	// boundLifetime is the bound cookie's lifetime in these tests: below
	// Chromium's early-refresh threshold (about two minutes), so the
	// browser refreshes alongside its requests, and short, so that
	// several lifetimes pass in seconds.
	boundLifetime = 3 * time.Second
	// dbscBrowserTimeout bounds one browser of these tests, which wait
	// through several bound-cookie lifetimes (about 10 s of each test is
	// waiting) and start two browsers: a start took 14 to 16 s on a
	// 2-core machine under a load average of 24.
	dbscBrowserTimeout = 2 * time.Minute
	// bindWithin bounds the time from the start of a sign-in to the
	// browser's binding (about 11 s measured: see signInBound).
	bindWithin = 25 * time.Second
)

// boundLeeway mirrors auth's: gatehouse accepts a bound cookie this long
// past its expiry (a request in flight when the browser's copy lapsed).
const boundLeeway = 5 * time.Second

// startBindingDemo starts the demo over HTTPS with session.device_binding
// in mode and session lines (two spaces of indent) added, and the bound
// cookie's lifetime cut to boundLifetime (validation allows 1m at least,
// which would make these tests minutes long; the code path is the same).
func startBindingDemo(t *testing.T, mode, session string) *Demo {
	t.Helper()
	return startDemoWith(t, Options{
		TLS:       true,
		ExtraYAML: "session:\n  device_binding: " + mode + "\n" + session,
		Adjust:    func(c *config.Config) { c.Session.DeviceBindingCookieTTL = boundLifetime },
	})
}

// dbscEvent is one Network.deviceBoundSessionEventOccurred, reduced to
// what the tests look at.
type dbscEvent struct {
	at        time.Time
	kind      string // creation, refresh, challenge or termination
	succeeded bool
	session   string
	detail    string // the fetch, refresh, challenge or deletion result
}

func (e dbscEvent) String() string {
	return fmt.Sprintf("%s %s ok=%v session=%q %s", e.at.Format("15:04:05.000"), e.kind, e.succeeded, e.session, e.detail)
}

// dbscRecorder keeps the DBSC events of one browser tab.
type dbscRecorder struct {
	mu     sync.Mutex
	events []dbscEvent
}

// record is a chromedp.Listen callback: it must return fast.
func (r *dbscRecorder) record(ev any) {
	e, ok := ev.(*network.EventDeviceBoundSessionEventOccurred)
	if !ok {
		return
	}
	de := dbscEvent{at: time.Now(), succeeded: e.Succeeded, session: e.SessionID}
	switch {
	case e.CreationEventDetails != nil:
		de.kind, de.detail = "creation", string(e.CreationEventDetails.FetchResult)
		if f := e.CreationEventDetails.FailedRequest; f != nil {
			de.detail += fmt.Sprintf(" (%s: net %q, status %d, body %q)", f.RequestURL, f.NetError, f.ResponseError, f.ResponseErrorBody)
		}
	case e.RefreshEventDetails != nil:
		de.kind = "refresh"
		de.detail = fmt.Sprintf("%s/%s proactive=%v", e.RefreshEventDetails.RefreshResult, e.RefreshEventDetails.FetchResult, e.RefreshEventDetails.WasFullyProactiveRefresh)
		if f := e.RefreshEventDetails.FailedRequest; f != nil {
			de.detail += fmt.Sprintf(" (%s: net %q, status %d, body %q)", f.RequestURL, f.NetError, f.ResponseError, f.ResponseErrorBody)
		}
	case e.ChallengeEventDetails != nil:
		de.kind, de.detail = "challenge", string(e.ChallengeEventDetails.ChallengeResult)
	case e.TerminationEventDetails != nil:
		de.kind, de.detail = "termination", string(e.TerminationEventDetails.DeletionReason)
	default:
		de.kind = "unknown"
	}
	r.mu.Lock()
	r.events = append(r.events, de)
	r.mu.Unlock()
}

// all returns the events so far.
func (r *dbscRecorder) all() []dbscEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]dbscEvent(nil), r.events...)
}

// count returns how many successful events of kind the browser reported.
func (r *dbscRecorder) count(kind string) int {
	n := 0
	for _, e := range r.all() {
		if e.kind == kind && e.succeeded {
			n++
		}
	}
	return n
}

// last returns the last successful event of kind, and whether there is one.
func (r *dbscRecorder) last(kind string) (dbscEvent, bool) {
	evs := r.all()
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].kind == kind && evs[i].succeeded {
			return evs[i], true
		}
	}
	return dbscEvent{}, false
}

// String lists the events, one a line, for logs and failures.
func (r *dbscRecorder) String() string {
	var b strings.Builder
	for _, e := range r.all() {
		b.WriteString("\n    " + e.String())
	}
	if b.Len() == 0 {
		return " none"
	}
	return b.String()
}

// waitFor waits, polling under bt.StepTimeout, until the browser has reported
// n successful events of kind, and returns the nth.
func (r *dbscRecorder) waitFor(t *testing.T, ctx context.Context, kind string, n int) dbscEvent {
	t.Helper()
	deadline := time.Now().Add(bt.StepTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		seen := 0
		for _, e := range r.all() {
			if e.kind == kind && e.succeeded {
				if seen++; seen == n {
					return e
				}
			}
		}
		if time.Now().After(deadline) {
			bt.Failf(t, ctx, "no successful DBSC %s event #%d within %s; the browser's DBSC events:%s", kind, n, bt.StepTimeout, r)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("waiting for DBSC %s event #%d: %v", kind, n, ctx.Err())
		}
	}
}

// newTLSBrowser starts a fresh Chromium profile that trusts the demo's
// certificate by its SPKI fingerprint, with DBSC on when dbsc is set, and
// records the tab's DBSC events (a browser without DBSC must report none).
func newTLSBrowser(t *testing.T, d *Demo, dbsc bool) (context.Context, *dbscRecorder) {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{chromedp.Flag("ignore-certificate-errors-spki-list", d.SPKIFingerprint)}
	if dbsc {
		opts = append(opts, chromedp.Flag("enable-features", dbscFeatures))
	}
	ctx := bt.NewWithin(t, dbscBrowserTimeout, opts...)
	rec := &dbscRecorder{}
	if err := chromedp.Listen(ctx, rec.record); err != nil {
		t.Fatalf("listen to the browser's events: %v", err)
	}
	sctx, cancel := context.WithTimeout(ctx, bt.StepTimeout)
	defer cancel()
	if _, err := chromedp.Call(sctx, network.EnableDeviceBoundSessions, network.EnableDeviceBoundSessionsParams{Enable: true}); err != nil {
		t.Fatalf("Network.enableDeviceBoundSessions: %v", err)
	}
	t.Cleanup(func() { t.Logf("DBSC events of a browser (DBSC %v):%s", dbsc, rec) })
	return ctx, rec
}

// openApp opens the demo app at base+appPath and returns the status of the
// page the browser ends on and the identity the app shows ("" when the
// page is not the app's).
func openApp(t *testing.T, ctx context.Context, base string) (int64, string) {
	t.Helper()
	resp := bt.Load(t, ctx, "open "+base+appPath, chromedp.Navigate(base+appPath))
	shown := bt.Run(t, ctx, "read the page", chromedp.Evaluate[string](appIdentityJS))
	return resp.Status, strings.TrimPrefix(shown, "app page: ")
}

// wantApp checks that base+appPath shows the app to alice.
func wantApp(t *testing.T, ctx context.Context, base, when string) {
	t.Helper()
	status, who := openApp(t, ctx, base)
	if status != http.StatusOK || who != "alice@example.com" {
		bt.Failf(t, ctx, "%s: status %d, app shows %q; want 200 and the app as alice@example.com", when, status, who)
	}
}

// wantRefused checks that base+appPath does not show the app: the request
// got a refusal status from gatehouse, not the app.
func wantRefused(t *testing.T, ctx context.Context, base, when string) int64 {
	t.Helper()
	status, who := openApp(t, ctx, base)
	if who != "" || (status != http.StatusUnauthorized && status != http.StatusForbidden) {
		bt.Failf(t, ctx, "%s: status %d, app shows %q; want 401 or 403 and no app", when, status, who)
	}
	return status
}

// pause lets real time pass (the browser's clock matters here, not an
// injected one), or fails when the test's context ends first.
func pause(t *testing.T, ctx context.Context, d time.Duration) {
	t.Helper()
	select {
	case <-time.After(d):
	case <-ctx.Done():
		t.Fatalf("pause %s: %v", d, ctx.Err())
	}
}

// stealCookies copies every cookie of the browser from into the fresh
// browser to, as an attacker who read them from disk or memory would:
// set for url, and without their expiry, since a thief can strip what
// the browser would otherwise drop (only the server's own expiry counts).
// It returns the names copied.
func stealCookies(t *testing.T, from, to context.Context, url string) []string {
	t.Helper()
	all := bt.Cookies(t, from)
	params := make([]*network.CookieParam, 0, len(all))
	names := make([]string, 0, len(all))
	for _, c := range all {
		params = append(params, &network.CookieParam{
			Name: c.Name, Value: c.Value, URL: url, Path: c.Path,
			Secure: c.Secure, HTTPOnly: c.HTTPOnly, SameSite: c.SameSite,
		})
		names = append(names, c.Name)
	}
	sctx, cancel := context.WithTimeout(to, bt.StepTimeout)
	defer cancel()
	if _, err := chromedp.Call(sctx, storage.SetCookies, storage.SetCookiesParams{Cookies: params}); err != nil {
		t.Fatalf("copy %d cookies into the second browser: %v", len(params), err)
	}
	if got := bt.Cookies(t, to); len(got) != len(all) {
		t.Fatalf("the second browser holds %s, want the %d copied: %s", bt.CookieList(got), len(all), bt.CookieList(all))
	}
	return names
}

// startReplica serves a second gateway built from the demo's configuration
// (same cookie keys, provider, upstream and session store) over HTTPS with
// the demo's certificate, on its own loopback port, until the test ends.
// It returns its URL. Cookies are scoped by host, not port, so a browser
// signed in on the demo sends its cookies to the replica too.
func startReplica(t *testing.T, d *Demo) string {
	t.Helper()
	cfg := d.Config
	gw, err := serve.NewGateway(cfg, serve.GatewayOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("replica gateway: %v", err)
	}
	certs, err := tlsserve.NewHolder(cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.External.Hostname(), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatalf("replica certificate: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); gw.Run(ctx) }()
	srv := gw.Server()
	srv.TLSConfig = tlsserve.ServerConfig(certs)
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
		if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("replica server: %v", err)
		}
		cancel()
		<-ran
		if c, ok := gw.Store.(io.Closer); ok {
			_ = c.Close()
		}
	})
	return "https://" + ln.Addr().String()
}

// signInBound signs alice in on the browser at base+appPath, then opens
// the app once a second, as a person clicking around would, until the
// browser has registered its key with gatehouse (a successful DBSC
// creation event), within bindWithin.
//
// Measured with Chromium 156: the registration that the sign-in's own
// answers offer fails (gatehouse answers 401 no_session), because the
// sign-in ends with a navigation from the identity provider, another
// site, and Chromium sends such a registration request with only the
// cookies a cross-site request carries, not the SameSite=Lax session
// cookie. Gatehouse offers again on page loads from 10 s after sign-in;
// the first of those binds.
func signInBound(t *testing.T, ctx context.Context, rec *dbscRecorder, d *Demo) dbscEvent {
	t.Helper()
	start := time.Now()
	resp := browserSignIn(t, ctx, d, "alice", appPath)
	wantAppAsAlice(t, ctx, d, resp, appPath)
	loads := 0
	for rec.count("creation") == 0 {
		if time.Since(start) > bindWithin {
			bt.Failf(t, ctx, "the browser did not bind within %s of the sign-in (%d page loads); its DBSC events:%s", bindWithin, loads, rec)
		}
		pause(t, ctx, time.Second)
		wantApp(t, ctx, d.URL, fmt.Sprintf("page load %d after the sign-in", loads+1))
		loads++
	}
	created := rec.waitFor(t, ctx, "creation", 1)
	t.Logf("bound %s after the sign-in started, at page load %d after it: %s", created.at.Sub(start).Round(time.Millisecond), loads, created)
	return created
}

// keepUsing opens the app on the browser every half lifetime for n bound-
// cookie lifetimes: every request must show the app, the browser
// refreshing the bound cookie as it goes.
func keepUsing(t *testing.T, ctx context.Context, rec *dbscRecorder, base string, n int) {
	t.Helper()
	before := rec.count("refresh")
	end := time.Now().Add(time.Duration(n) * boundLifetime)
	requests := 0
	for time.Now().Before(end) {
		wantApp(t, ctx, base, fmt.Sprintf("request %d of the signed-in browser", requests+1))
		requests++
		pause(t, ctx, boundLifetime/2)
	}
	refreshed := rec.count("refresh") - before
	t.Logf("%d requests over %d bound-cookie lifetimes (%s each), %d refreshes", requests, n, boundLifetime, refreshed)
	// Each lifetime needs at least one refresh, or the bound cookie would
	// have lapsed and the requests failed.
	if refreshed < n {
		bt.Failf(t, ctx, "%d successful DBSC refreshes over %d lifetimes, want at least %d; events:%s", refreshed, n, n, rec)
	}
}

// theft signs alice in with a DBSC browser on victimURL (the demo), uses
// the app there across several bound-cookie lifetimes, copies every
// cookie into a fresh browser profile, and checks that the copy opens the
// app on thiefURL only until the bound cookie's server-side expiry, then
// is refused every time, while the first browser stays signed in.
func theft(t *testing.T, d *Demo, thiefURL string) {
	victim, vrec := newTLSBrowser(t, d, true)
	thief, trec := newTLSBrowser(t, d, true)

	signInBound(t, victim, vrec, d)
	keepUsing(t, victim, vrec, d.URL, 3)

	// The victim's last request refreshed the bound cookie: copy it and
	// everything else now, and use it at once.
	wantApp(t, victim, d.URL, "the victim's request before the theft")
	fresh, ok := vrec.last("refresh")
	if !ok {
		t.Fatalf("no refresh event before the theft; events:%s", vrec)
	}
	names := stealCookies(t, victim, thief, d.URL)
	t.Logf("copied cookies %v, %s after the victim's last refresh", names, time.Since(fresh.at).Round(time.Millisecond))
	wantApp(t, thief, thiefURL, "the copied cookies before the bound cookie's expiry")
	worked := time.Since(fresh.at)

	// Then, once the bound cookie's lifetime and gatehouse's leeway have
	// passed, gatehouse refuses the copy.
	deadline := fresh.at.Add(boundLifetime + boundLeeway + 2*time.Second)
	for {
		status, who := openApp(t, thief, thiefURL)
		if who == "" {
			if status != http.StatusUnauthorized && status != http.StatusForbidden {
				bt.Failf(t, thief, "the copied cookies: status %d without the app, want 401 or 403", status)
			}
			t.Logf("the copy worked %s after the refresh and was refused (%d) %s after it", worked.Round(time.Millisecond), status, time.Since(fresh.at).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			bt.Failf(t, thief, "the copied cookies still open the app %s after the victim's last refresh (bound cookie lifetime %s)", time.Since(fresh.at).Round(time.Millisecond), boundLifetime)
		}
		pause(t, thief, 250*time.Millisecond)
	}
	// Refused every time after that: the thief's browser has no key, so
	// it cannot refresh.
	for i := range 2 {
		wantRefused(t, thief, thiefURL, fmt.Sprintf("the copied cookies, attempt %d after the refusal", i+2))
	}
	// Its browser sees the challenge on the refusals but holds no session
	// to answer it with (Chromium reports NoSessionMatch).
	if trec.count("creation")+trec.count("refresh")+trec.count("challenge") != 0 {
		t.Errorf("the thief's browser reports a successful DBSC event, want none (it holds no key):%s", trec)
	}

	// The victim stays signed in, on both addresses, refreshing with its key.
	refreshes := vrec.count("refresh")
	wantApp(t, victim, d.URL, "the victim after the theft")
	if thiefURL != d.URL {
		wantApp(t, victim, thiefURL, "the victim on the thief's replica after the theft")
	}
	if vrec.count("refresh") <= refreshes {
		bt.Failf(t, victim, "the victim's browser did not refresh after the theft; events:%s", vrec)
	}
	// The victim's fresh bound cookie does nothing for the copy.
	wantRefused(t, thief, thiefURL, "the copied cookies after the victim's refresh")
}

// TestBrowserDBSC_StolenCookies: the proof in a real browser, one
// gatehouse.
func TestBrowserDBSC_StolenCookies(t *testing.T) {
	d := startBindingDemo(t, "prefer", "")
	theft(t, d, d.URL)
}

// TestBrowserDBSC_StolenCookiesAcrossReplicas: bound on one replica, the
// copy refused on the other, sessions shared through Redis.
func TestBrowserDBSC_StolenCookiesAcrossReplicas(t *testing.T) {
	redistest.Require(t, redistest.Addr)
	store := fmt.Sprintf("  store: redis\n  redis:\n    url: redis://%s/0\n    key_prefix: %q\n", redistest.Addr, redistest.KeyPrefix(t, redistest.Addr))
	d := startBindingDemo(t, "prefer", store)
	theft(t, d, startReplica(t, d))
}

// requireGrace is session.device_binding_grace in the require tests.
// It exceeds the time a DBSC browser takes to bind (see signInBound).
const requireGrace = 16 * time.Second

// TestBrowserDBSC_WithoutDBSC: a browser without DBSC ignores the offers.
// Under prefer it keeps an ordinary session across several bound-cookie
// lifetimes; under require it gets gatehouse's page once the grace after
// sign-in has passed, while a browser with DBSC, signed in the same way,
// binds and keeps working.
func TestBrowserDBSC_WithoutDBSC(t *testing.T) {
	t.Run("prefer", func(t *testing.T) {
		d := startBindingDemo(t, "prefer", "")
		ctx, rec := newTLSBrowser(t, d, false)
		resp := browserSignIn(t, ctx, d, "alice", appPath)
		wantAppAsAlice(t, ctx, d, resp, appPath)
		end := time.Now().Add(3 * boundLifetime)
		requests := 0
		for ; time.Now().Before(end); requests++ {
			wantApp(t, ctx, d.URL, fmt.Sprintf("request %d of the browser without DBSC", requests+1))
			pause(t, ctx, boundLifetime/2)
		}
		t.Logf("%d requests over 3 bound-cookie lifetimes (%s each) with an ordinary session", requests, boundLifetime)
		if n := len(rec.all()); n != 0 {
			t.Errorf("the browser without DBSC reported %d DBSC events, want none:%s", n, rec)
		}
		if c := bt.CookieNamed(t, ctx, d.Gateway.Auth().BoundCookieName()); c != nil {
			t.Errorf("the browser without DBSC holds a bound cookie %s", c.Name)
		}
	})
	t.Run("require", func(t *testing.T) {
		d := startBindingDemo(t, "require", fmt.Sprintf("  device_binding_grace: %s\n", requireGrace))
		plain, prec := newTLSBrowser(t, d, false)
		bound, brec := newTLSBrowser(t, d, true)

		resp := browserSignIn(t, plain, d, "alice", appPath)
		wantAppAsAlice(t, plain, d, resp, appPath) // within the grace
		signedIn := time.Now()                     // after the session's creation
		signInBound(t, bound, brec, d)

		pause(t, plain, time.Until(signedIn.Add(requireGrace+time.Second)))
		resp = bt.Load(t, plain, "open the app after the grace", chromedp.Navigate(d.URL+appPath))
		if resp.Status != http.StatusForbidden {
			bt.Failf(t, plain, "the browser without DBSC after the grace: status %d, want 403", resp.Status)
		}
		const title = "This browser cannot bind the session"
		if got := bt.TextOf(t, plain, "title"); got != title {
			bt.Failf(t, plain, "the browser without DBSC after the grace sees %q, want gatehouse's page %q", got, title)
		}
		if got := bt.TextOf(t, plain, "detail"); !strings.Contains(got, "Device Bound Session Credentials") {
			bt.Failf(t, plain, "the page does not say what is missing: %q", got)
		}
		if n := len(prec.all()); n != 0 {
			t.Errorf("the browser without DBSC reported %d DBSC events, want none:%s", n, prec)
		}
		wantApp(t, bound, d.URL, "the browser with DBSC after the grace")
	})
}
