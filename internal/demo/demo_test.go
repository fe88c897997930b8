package demo

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// signIn walks the demo like a person: open the app, land on the
// development provider's page, press the user's button, follow the
// redirects back. It returns the final page.
func signIn(t *testing.T, d *Demo, user string) (*http.Response, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
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
