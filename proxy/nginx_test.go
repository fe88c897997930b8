package proxy_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// recipePath is the documented nginx configuration; the end-to-end test
// runs it, not a copy, so the documentation cannot drift from what works.
const recipePath = "../testdata/forward-auth/nginx.conf"

// nginxGatehouseYAML is gatehouse's side of the nginx setup: forward-auth
// only (no upstream of its own), staff may pass, /admin only admins,
// /public without login, and a host-specific route that is public
// everywhere, which a client must not be able to select with its Host
// header. %s is nginx's host:port, where a login may return.
const nginxGatehouseYAML = `forward_auth: {mode: nginx}
redirect_allow_hosts: ["%s"]
routes:
  - name: app
    match: {path_prefix: /}
    public: [/public]
    allow: {groups: [staff]}
  - name: app-admin
    match: {path_prefix: /admin}
    allow: {groups: [admins]}
  - name: open
    match: {host: open.example.com}
    public: [/]
`

// TestNginx_AuthRequest runs real nginx with the documented auth_request
// recipe (testdata/forward-auth/nginx.conf) in front of the recording
// upstream, asking gatehouse, and walks it as a browser and an API client
// would: login, identity headers, denial, public paths, spoofed headers,
// sign-out.
//
// gatehouse's external_url is its own httptest address
// (http://127.0.0.1:G) and nginx listens on another loopback port
// (http://127.0.0.1:N). gatehouse's session cookie is host-only, and
// cookies are not separated by port (RFC 6265 §8.5; Go's cookie jar does
// the same as browsers), so the cookie set on 127.0.0.1 by the login is
// also sent to nginx on 127.0.0.1:N, which hands it to gatehouse in the
// auth subrequest. That is what the recipe achieves in production by
// serving gatehouse under /_gatehouse/ on the app's own host.
func TestNginx_AuthRequest(t *testing.T) {
	bin := nginxBinary(t)
	addr := freeLoopbackAddr(t)
	e := testenv.New(t, testenv.Options{NoUpstream: true, YAML: fmt.Sprintf(nginxGatehouseYAML, addr)})
	conf := recipe(t, addr, hostPort(t, e.URL), hostPort(t, e.Upstream.URL))
	base := startNginx(t, bin, conf, addr)

	loginURL := func(path string) string {
		return e.URL + "/_gatehouse/start?rd=" + url.QueryEscape(base+path)
	}
	// reached runs f and reports the requests the upstream received
	// meanwhile.
	reached := func(f func()) []*http.Request {
		before := len(e.Requests())
		f()
		return e.Requests()[before:]
	}
	wantNotReached := func(t *testing.T, f func()) {
		t.Helper()
		if got := reached(f); len(got) != 0 {
			t.Fatalf("the upstream was reached: %s", got[0].URL)
		}
	}
	wantIdentity := func(t *testing.T, r *http.Request, want map[string]string) {
		t.Helper()
		for _, name := range []string{config.DefaultUserHeader, config.DefaultEmailHeader, config.DefaultGroupsHeader, config.DefaultNameHeader} {
			got := identityValues(r.Header, name)
			var w []string
			if v := want[name]; v != "" {
				w = []string{v}
			}
			if !slices.Equal(got, w) {
				t.Errorf("upstream got %s = %q, want %q", name, got, w)
			}
		}
	}
	anon := e.NewBrowser()
	bob := e.NewBrowser()

	t.Run("API client without session gets 401 with the login URL", func(t *testing.T) {
		var r *testenv.Response
		wantNotReached(t, func() { r = anon.Get(base+"/page?x=1", "Accept", "application/json") })
		if r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401; body %s", r.StatusCode, r.Body)
		}
		var body map[string]string
		if err := json.Unmarshal([]byte(r.Body), &body); err != nil {
			t.Fatalf("body is not JSON (%v): %s", err, r.Body)
		}
		if want := loginURL("/page?x=1"); body["login_url"] != want || r.Header.Get("X-Gatehouse-Login") != want {
			t.Errorf("login_url %q, X-Gatehouse-Login %q, want %q", body["login_url"], r.Header.Get("X-Gatehouse-Login"), want)
		}
		// nginx copies gatehouse's challenge from the auth subrequest.
		if got := r.Header.Values("WWW-Authenticate"); len(got) != 1 || !strings.Contains(got[0], `login_url="`+loginURL("/page?x=1")+`"`) {
			t.Errorf("WWW-Authenticate = %q, want gatehouse's one challenge naming the login URL", got)
		}
	})

	t.Run("POST without session gets 401, not a redirect", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, base+"/page", strings.NewReader("a=1"))
		req.Header.Set("Accept", "text/html")
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		var r *testenv.Response
		wantNotReached(t, func() { r = anon.Do(req) })
		if r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", r.StatusCode)
		}
	})

	t.Run("public path without login", func(t *testing.T) {
		var r *testenv.Response
		got := reached(func() { r = anon.Get(base+"/public/app.css", "Accept", "text/css") })
		if r.StatusCode != http.StatusOK || len(got) != 1 {
			t.Fatalf("status %d, upstream requests %d; want 200 from the upstream", r.StatusCode, len(got))
		}
		if got[0].URL.Path != "/public/app.css" {
			t.Errorf("upstream served %q", got[0].URL.Path)
		}
		wantIdentity(t, got[0], nil)
	})

	t.Run("spoofed identity on a public path is removed", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, base+"/public/x", nil)
		spoofIdentity(req.Header)
		var r *testenv.Response
		got := reached(func() { r = anon.Do(req) })
		if r.StatusCode != http.StatusOK || len(got) != 1 {
			t.Fatalf("status %d, upstream requests %d", r.StatusCode, len(got))
		}
		wantIdentity(t, got[0], nil)
	})

	// A client's own forwarding headers ride along in the auth subrequest
	// to gatehouse, which trusts nginx; the recipe must override them, or
	// they would choose the path or route gatehouse decides on.
	for _, tc := range []struct {
		name string
		hdr  []string
	}{
		{"X-Forwarded-Uri naming a public path", []string{"X-Forwarded-Uri", "/public/x"}},
		{"X-Forwarded-Host naming a public route", []string{"X-Forwarded-Host", "open.example.com", "X-Forwarded-Uri", "/x"}},
		{"X-Original-URL naming a public path", []string{"X-Original-URL", base + "/public/x"}},
		{"X-Original-URL on a public route", []string{"X-Original-URL", "http://open.example.com/x"}},
	} {
		t.Run("no session, "+tc.name, func(t *testing.T) {
			var r *testenv.Response
			wantNotReached(t, func() { r = anon.Get(base+"/page", append([]string{"Accept", "application/json"}, tc.hdr...)...) })
			if r.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", r.StatusCode)
			}
		})
	}

	t.Run("Host header naming a public route", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, base+"/page", nil)
		req.Host = "open.example.com"
		req.Header.Set("Accept", "application/json")
		var r *testenv.Response
		wantNotReached(t, func() { r = anon.Do(req) })
		if r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", r.StatusCode)
		}
	})

	t.Run("dot segments out of a public path", func(t *testing.T) {
		// Sent as written; nginx matches its location on the normalised
		// path and passes the raw one, which gatehouse cleans itself.
		req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
		req.URL.Opaque = "//" + addr + "/public/../page"
		req.Header.Set("Accept", "application/json")
		var r *testenv.Response
		wantNotReached(t, func() { r = anon.Do(req) })
		if r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", r.StatusCode)
		}
	})

	t.Run("login through nginx returns to the page with the identity", func(t *testing.T) {
		e.IdP.QueueUser(testenv.User("bob", "bob@example.com", "staff"))
		var r *testenv.Response
		got := reached(func() { r = bob.Navigate(base + "/page?x=1") })
		if r.StatusCode != http.StatusOK {
			t.Fatalf("status %d, want 200; hops %v; body %.300s", r.StatusCode, r.Hops, r.Body)
		}
		if len(r.Hops) < 3 || r.Hops[1] != loginURL("/page?x=1") || r.Hops[len(r.Hops)-1] != base+"/page?x=1" {
			t.Fatalf("hops %q\nwant nginx → %s → ... → nginx again", r.Hops, loginURL("/page?x=1"))
		}
		if len(got) != 1 || got[0].URL.RequestURI() != "/page?x=1" {
			t.Fatalf("upstream requests %d, want one for /page?x=1", len(got))
		}
		wantIdentity(t, got[0], map[string]string{
			config.DefaultUserHeader: "bob", config.DefaultEmailHeader: "bob@example.com",
			config.DefaultGroupsHeader: "staff", config.DefaultNameHeader: "bob",
		})
	})

	t.Run("signed in, spoofed identity is replaced", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, base+"/page", nil)
		spoofIdentity(req.Header)
		var r *testenv.Response
		got := reached(func() { r = bob.Do(req) })
		if r.StatusCode != http.StatusOK || len(got) != 1 {
			t.Fatalf("status %d, upstream requests %d", r.StatusCode, len(got))
		}
		wantIdentity(t, got[0], map[string]string{
			config.DefaultUserHeader: "bob", config.DefaultEmailHeader: "bob@example.com",
			config.DefaultGroupsHeader: "staff", config.DefaultNameHeader: "bob",
		})
	})

	t.Run("the app does not get the session cookie", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, base+"/page", nil)
		req.AddCookie(&http.Cookie{Name: "theme", Value: "dark"})
		got := reached(func() { bob.Do(req) })
		if len(got) != 1 {
			t.Fatalf("upstream requests %d, want 1", len(got))
		}
		name := e.Gateway.Auth().SessionCookieName()
		if _, err := got[0].Cookie(name); err == nil {
			t.Errorf("upstream got cookie %s; Cookie: %q", name, got[0].Header["Cookie"])
		}
		if c, err := got[0].Cookie("theme"); err != nil || c.Value != "dark" {
			t.Errorf("upstream lost the app's own cookie; Cookie: %q", got[0].Header["Cookie"])
		}
	})

	for _, tc := range []struct {
		name string
		path string
		hdr  []string
	}{
		{"/admin", "/admin", nil},
		{"/admin/x?y=1", "/admin/x?y=1", nil},
		{"/ADMIN (paths compare without case)", "/ADMIN", nil},
		{"/admin claiming X-Forwarded-Uri /page", "/admin", []string{"X-Forwarded-Uri", "/page"}},
		{"/admin with X-Forwarded-Method alone (judged as /)", "/admin", []string{"X-Forwarded-Method", "GET"}},
		{"/admin claiming X-Original-URL /page", "/admin", []string{"X-Original-URL", base + "/page"}},
	} {
		t.Run("signed in, not an admin: "+tc.name, func(t *testing.T) {
			var r *testenv.Response
			wantNotReached(t, func() {
				r = bob.Get(base+tc.path, append([]string{"Accept", "text/html", "Sec-Fetch-Mode", "navigate"}, tc.hdr...)...)
			})
			if r.StatusCode != http.StatusForbidden {
				t.Fatalf("status %d, want 403", r.StatusCode)
			}
		})
	}

	t.Run("after sign-out the next request is unauthenticated", func(t *testing.T) {
		page := bob.Get(e.URL+"/_gatehouse/logout", "Accept", "text/html")
		csrf := between(page.Body, `name="csrf" value="`, `"`)
		if page.StatusCode != http.StatusOK || csrf == "" {
			t.Fatalf("logout page: status %d, no CSRF token in %s", page.StatusCode, page.Body)
		}
		if r := postForm(t, bob, e.URL+"/_gatehouse/logout", "csrf="+url.QueryEscape(csrf), e.URL); r.StatusCode != http.StatusSeeOther {
			t.Fatalf("logout: status %d, want 303; body %s", r.StatusCode, r.Body)
		}
		var r *testenv.Response
		wantNotReached(t, func() { r = bob.Get(base+"/page", "Accept", "text/html", "Sec-Fetch-Mode", "navigate") })
		if r.StatusCode != http.StatusFound || r.Header.Get("Location") != loginURL("/page") {
			t.Fatalf("status %d Location %q, want 302 to %s", r.StatusCode, r.Header.Get("Location"), loginURL("/page"))
		}
		wantNotReached(t, func() { r = bob.Get(base+"/page", "Accept", "application/json") })
		if r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("API client: status %d, want 401", r.StatusCode)
		}
	})
}

// spoofIdentity adds identity headers a client has no business sending:
// the canonical names, lower case, twice, and "_" look-alikes.
func spoofIdentity(h http.Header) {
	h.Add("X-Forwarded-User", "evil")
	h.Add("X-Forwarded-User", "evil2")
	h["x-forwarded-email"] = []string{"evil@example.com"}
	h["X-Forwarded_Groups"] = []string{"admins"}
	h["X_Forwarded_Preferred_Username"] = []string{"evil"}
}

// identityValues returns every value the upstream received under name or a
// look-alike (any case, "_" for "-").
func identityValues(h http.Header, name string) []string {
	var out []string
	for k, v := range h {
		if config.NormalizeHeader(k) == config.NormalizeHeader(name) {
			out = append(out, v...)
		}
	}
	return out
}

// TestNginx_RecipeIsValid checks the documented nginx configuration as
// shipped, TLS included: nginx -t with a generated self-signed
// certificate in place of the example's paths.
func TestNginx_RecipeIsValid(t *testing.T) {
	bin := nginxBinary(t)
	dir := t.TempDir()
	cert, key := selfSignedCert(t, dir, "app.example.com")
	data, err := os.ReadFile(recipePath)
	if err != nil {
		t.Fatal(err)
	}
	conf := replaceOnce(t, string(data),
		"/etc/ssl/app.example.com/fullchain.pem", cert,
		"/etc/ssl/app.example.com/privkey.pem", key)
	main := writeNginxConf(t, dir, conf)
	if out, err := nginxTest(t, bin, dir, main); err != nil {
		t.Fatalf("nginx -t refuses %s: %v\n%s", recipePath, err, out)
	}
}

// TestForwardAuthExamples_YAML checks that the Traefik and Envoy examples
// are YAML and carry the parts gatehouse relies on.
func TestForwardAuthExamples_YAML(t *testing.T) {
	identity := []string{config.DefaultUserHeader, config.DefaultEmailHeader, config.DefaultGroupsHeader, config.DefaultNameHeader}
	for _, tc := range []struct {
		file string
		want []string // texts the file must hold outside comments
	}{
		{"traefik.yml", append([]string{"address: http://gatehouse:4180/_gatehouse/auth", "trustForwardHeader: true"}, identity...)},
		{"envoy.yaml", append([]string{"envoy.filters.http.ext_authz", "path_prefix: /_gatehouse/auth",
			"envoy.filters.http.header_mutation", "headers_with_underscores_action: REJECT_REQUEST"}, lower(identity)...)},
	} {
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("../testdata/forward-auth", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			var doc map[string]any
			dec := yaml.NewDecoder(bytes.NewReader(data))
			if err := dec.Decode(&doc); err != nil {
				t.Fatalf("not YAML: %v", err)
			}
			if len(doc) == 0 {
				t.Fatal("empty document")
			}
			var live strings.Builder
			for _, l := range strings.Split(string(data), "\n") {
				if !strings.HasPrefix(strings.TrimSpace(l), "#") {
					live.WriteString(l + "\n")
				}
			}
			for _, w := range tc.want {
				if !strings.Contains(live.String(), w) {
					t.Errorf("%s does not contain %q", tc.file, w)
				}
			}
		})
	}
}

// TestForwardAuthExamples_GatehouseConfig loads the gatehouse
// configuration each example names in its comments, so the keys and
// values it tells operators to write are ones gatehouse accepts.
func TestForwardAuthExamples_GatehouseConfig(t *testing.T) {
	for file, mode := range map[string]string{"nginx.conf": "nginx", "traefik.yml": "traefik", "envoy.yaml": "envoy"} {
		t.Run(file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("../testdata/forward-auth", file))
			if err != nil {
				t.Fatal(err)
			}
			var snippet []string
			for _, l := range strings.Split(string(data), "\n") {
				switch {
				case strings.HasPrefix(l, "#   listen:"):
					snippet = []string{}
				case snippet == nil:
					continue
				case strings.Contains(l, "(oidc and cookie sections as usual)"):
					yml := strings.Join(snippet, "\n") + `
oidc:
  issuer: https://sso.example.com
  client_id: app
  client_secret: s3cret
cookie:
  secret: ` + strings.Repeat("s", 32) + "\n"
					cfg, err := config.Parse([]byte(yml), func(string) (string, bool) { return "", false })
					if err != nil {
						t.Fatalf("gatehouse refuses the configuration in %s: %v\n%s", file, err, yml)
					}
					if cfg.ForwardAuth.Mode != mode || len(cfg.Warnings) > 0 {
						t.Errorf("forward_auth.mode %q, want %q; warnings %q", cfg.ForwardAuth.Mode, mode, cfg.Warnings)
					}
					return
				}
				snippet = append(snippet, strings.TrimPrefix(strings.TrimPrefix(l, "#"), "   "))
			}
			t.Fatalf("%s has no gatehouse configuration from \"#   listen:\" to \"(oidc and cookie sections as usual)\"", file)
		})
	}
}

func lower(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ToLower(s)
	}
	return out
}

// nginxBinary returns nginx's path. Without nginx the test is skipped,
// unless CI is set: CI installs nginx, so its absence there is a failure.
func nginxBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	if os.Getenv("CI") != "" {
		t.Fatal("nginx not found in PATH or /usr/sbin/nginx; CI must install it (apt-get install nginx)")
	}
	t.Skip("nginx not installed (not in PATH or /usr/sbin/nginx); install it to run the nginx integration test")
	return ""
}

// freeLoopbackAddr returns a 127.0.0.1 address whose port was free a
// moment ago.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func hostPort(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// recipe turns the documented configuration into one for this test:
// https on 443 becomes http on addr, and the example addresses of
// gatehouse and the app become the test's. Every replaced text must occur
// exactly as expected, so an edit of the recipe that this test no longer
// understands fails here rather than testing something else.
func recipe(t *testing.T, addr, gatehouse, upstream string) string {
	t.Helper()
	data, err := os.ReadFile(recipePath)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, l := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "ssl_") {
			kept = append(kept, l)
		}
	}
	return replaceOnce(t, strings.Join(kept, "\n"),
		"listen 443 ssl;", "listen "+addr+";",
		"https://app.example.com$request_uri", "http://"+addr+"$request_uri",
		"http://127.0.0.1:4180/_gatehouse/auth;", "http://"+gatehouse+"/_gatehouse/auth;",
		"proxy_pass http://127.0.0.1:4180;", "proxy_pass http://"+gatehouse+";",
		"proxy_pass http://127.0.0.1:8080;", "proxy_pass http://"+upstream+";")
}

// replaceOnce replaces each old (every other argument) with the new text
// after it, failing unless old occurs exactly once.
func replaceOnce(t *testing.T, s string, oldNew ...string) string {
	t.Helper()
	for i := 0; i+1 < len(oldNew); i += 2 {
		if n := strings.Count(s, oldNew[i]); n != 1 {
			t.Fatalf("%s: %q occurs %d times, want once; update the test with the recipe", recipePath, oldNew[i], n)
		}
		s = strings.Replace(s, oldNew[i], oldNew[i+1], 1)
	}
	return s
}

// writeNginxConf writes a main configuration in dir that keeps every
// path nginx writes (pid, logs, temp files) inside dir, runs in the
// foreground as one process, and includes server, an http-level file.
func writeNginxConf(t *testing.T, dir, server string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "server.conf"), []byte(server), 0o644); err != nil {
		t.Fatal(err)
	}
	user := ""
	if os.Geteuid() == 0 {
		// As root, nginx looks up the user "nobody" for its temp
		// directories; say root so that user need not exist.
		user = "user root;\n"
	}
	main := fmt.Sprintf(`%sdaemon off;
master_process off;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log info;
events {
    worker_connections 64;
}
http {
    access_log %[2]s/access.log;
    client_body_temp_path %[2]s/client_body_temp;
    proxy_temp_path %[2]s/proxy_temp;
    fastcgi_temp_path %[2]s/fastcgi_temp;
    uwsgi_temp_path %[2]s/uwsgi_temp;
    scgi_temp_path %[2]s/scgi_temp;
    include %[2]s/server.conf;
}
`, user, dir)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func nginxTest(t *testing.T, bin, dir, conf string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, bin, "-t", "-p", dir+"/", "-c", conf, "-e", filepath.Join(dir, "error.log")).CombinedOutput()
}

// startNginx checks and starts nginx with server (an http-level
// configuration listening on addr), waits until addr answers, and stops
// nginx at the end of the test. It returns nginx's base URL.
func startNginx(t *testing.T, bin, server, addr string) string {
	t.Helper()
	dir := t.TempDir()
	conf := writeNginxConf(t, dir, server)
	if out, err := nginxTest(t, bin, dir, conf); err != nil {
		t.Fatalf("nginx -t: %v\n%s\nconfiguration:\n%s", err, out, server)
	}
	// nginx's own output goes to a file: nothing reads it while nginx
	// writes.
	output, err := os.Create(filepath.Join(dir, "output.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer output.Close() // nginx holds its own copy
	cmd := exec.Command(bin, "-p", dir+"/", "-c", conf, "-e", filepath.Join(dir, "error.log"))
	cmd.Stdout, cmd.Stderr = output, output
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	logs := func() string {
		out, _ := os.ReadFile(filepath.Join(dir, "output.log"))
		errs, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		return string(out) + string(errs)
	}
	t.Cleanup(func() {
		// SIGTERM is nginx's fast shutdown; kill it if it lingers.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("nginx did not stop on SIGTERM within 5s")
		}
		if t.Failed() {
			t.Logf("nginx error log:\n%s", logs())
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return "http://" + addr
		}
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("nginx exited before listening: %v\n%s", err, logs())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx not listening on %s after 5s: %v\n%s", addr, err, logs())
		}
	}
}

// selfSignedCert writes a fresh self-signed certificate and key for host
// into dir and returns their paths.
func selfSignedCert(t *testing.T, dir, host string) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for path, block := range map[string]*pem.Block{
		certPath: {Type: "CERTIFICATE", Bytes: der},
		keyPath:  {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certPath, keyPath
}
