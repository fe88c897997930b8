package demo

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/devca"
)

// signIn walks the demo like a person: open the app, land on the
// development provider's page, press the user's button, follow the
// redirects back. It returns the final page.
func signIn(t *testing.T, d *Demo, user string) (*http.Response, string) {
	t.Helper()
	return signInWith(t, d, user, nil)
}

// signInWith signs in as signIn does, through transport (nil: the
// default).
func signInWith(t *testing.T, d *Demo, user string, transport http.RoundTripper) (*http.Response, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second, Transport: transport}
	get := func(u string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("Accept", "text/html")
		req.Header.Set("Sec-Fetch-Mode", "navigate")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, page := get(d.URL + "/docs/page?x=1")
	if !strings.HasPrefix(resp.Request.URL.String(), d.IdPURL+"/authorize") {
		t.Fatalf("not on the provider's sign-in page: %s", resp.Request.URL)
	}
	form := url.Values{"user": {user}}
	for _, m := range regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)"`).FindAllStringSubmatch(page, -1) {
		form.Set(m[1], htmlUnescape(m[2]))
	}
	resp, err := c.PostForm(d.IdPURL+"/authorize", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&amp;", "&", "&#43;", "+", "&#39;", "'", "&quot;", `"`, "&lt;", "<", "&gt;", ">").Replace(s)
}

func TestDemo_AliceSeesHerIdentityBobIsForbidden(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	d, err := Start(ctx, Options{Listen: "127.0.0.1:0", IdPListen: "127.0.0.1:0", AppListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	resp, page := signIn(t, d, "alice")
	if resp.StatusCode != http.StatusOK || resp.Request.URL.String() != d.URL+"/docs/page?x=1" {
		t.Fatalf("alice: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	for _, want := range []string{"alice@example.com", "admins,staff", `id="path"`} {
		if !strings.Contains(page, want) {
			t.Errorf("demo app page lacks %q:\n%s", want, page)
		}
	}

	resp, page = signIn(t, d, "bob")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "bob") {
		t.Errorf("bob: %d, want gatehouse's 403 page naming him:\n%s", resp.StatusCode, page)
	}
}

func TestDemo_RefusesNonLoopback(t *testing.T) {
	_, err := Start(t.Context(), Options{Listen: "0.0.0.0:0", IdPListen: "127.0.0.1:0", AppListen: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "loopback only") {
		t.Fatalf("err = %v, want a loopback-only refusal", err)
	}
}

// TestDemo_TLS: with TLS the demo serves gatehouse over HTTPS with a
// certificate its CA file vouches for, whose fingerprint it prints, and
// removes the files when it stops.
func TestDemo_TLS(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	d, err := Start(ctx, Options{Listen: "127.0.0.1:0", IdPListen: "127.0.0.1:0", AppListen: "127.0.0.1:0", TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if !strings.HasPrefix(d.URL, "https://127.0.0.1:") || !strings.HasPrefix(d.IdPURL, "http://") || !strings.HasPrefix(d.AppURL, "http://") {
		t.Fatalf("URLs %s %s %s; want gatehouse on https, the provider and the app on http", d.URL, d.IdPURL, d.AppURL)
	}
	caPEM, err := os.ReadFile(d.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("%s holds no certificate", d.CAFile)
	}
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	resp, page := signInWith(t, d, "alice", transport)
	if resp.StatusCode != http.StatusOK || resp.Request.URL.String() != d.URL+"/docs/page?x=1" || !strings.Contains(page, "alice@example.com") {
		t.Fatalf("alice over https: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	if resp.TLS == nil || resp.TLS.NegotiatedProtocol != "h2" {
		t.Errorf("protocol %s, want h2", resp.Proto)
	}
	if got := devca.SPKIFingerprint(resp.TLS.PeerCertificates[0]); got != d.SPKIFingerprint {
		t.Errorf("the served certificate's SPKI fingerprint is %s, the demo says %s", got, d.SPKIFingerprint)
	}
	var out bytes.Buffer
	d.PrintWelcome(&out)
	for _, want := range []string{"Open  " + d.URL + "/", "--ignore-certificate-errors-spki-list=" + d.SPKIFingerprint, "curl --cacert " + d.CAFile} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("welcome lacks %q:\n%s", want, out.String())
		}
	}
	dir := filepath.Dir(d.CAFile)
	d.Close()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the demo's certificate directory %s is still there after Close (stat: %v)", dir, err)
	}
}
