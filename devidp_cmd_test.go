package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/gatehouse/gatehouse/internal/testenv"
	"golang.org/x/oauth2"
)

// devIdP is a `gatehouse devidp` running through run().
type devIdP struct {
	issuer string
	out    strings.Builder // stdout after the issuer line
	stderr *testenv.LogBuffer
	cancel context.CancelFunc
	code   chan int
}

// startDevIdP runs `gatehouse devidp args...` until the test ends and
// reads its welcome up to the pasteable block's scopes line.
func startDevIdPCmd(t *testing.T, args ...string) *devIdP {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	d := &devIdP{stderr: &testenv.LogBuffer{}, cancel: cancel, code: make(chan int, 1)}
	go func() {
		d.code <- run(ctx, append([]string{"devidp"}, args...), pw, d.stderr)
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		go io.Copy(io.Discard, pr) //nolint:errcheck // drain until run returns
		select {
		case <-d.code:
		case <-time.After(10 * time.Second):
			t.Error("gatehouse devidp did not stop within 10s of its context ending")
		}
	})
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
			if strings.HasPrefix(sc.Text(), "  scopes:") {
				return
			}
		}
	}()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				code := <-d.code
				t.Fatalf("gatehouse devidp ended (exit %d) before printing its configuration block; stdout:\n%s\nstderr:\n%s", code, d.out.String(), d.stderr.String())
			}
			d.out.WriteString(l + "\n")
			if v, ok := strings.CutPrefix(l, "  issuer:"); ok && d.issuer == "" {
				d.issuer = strings.TrimSpace(v)
			}
			if strings.HasPrefix(l, "  scopes:") {
				go io.Copy(io.Discard, pr) //nolint:errcheck // later output (none expected)
				return d
			}
		case <-deadline:
			t.Fatalf("gatehouse devidp printed no configuration block within 10s; stdout so far:\n%s\nstderr:\n%s", d.out.String(), d.stderr.String())
		}
	}
}

// signInAs runs the authorization-code flow with PKCE against the
// provider as a relying party would, choosing user on its sign-in page,
// and returns the verified ID token's claims.
func signInAs(t *testing.T, issuer, clientID, secret, redirectURI, user string) map[string]any {
	t.Helper()
	ctx := t.Context()
	provider, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		t.Fatalf("discovery at %s: %v", issuer, err)
	}
	conf := oauth2.Config{ClientID: clientID, ClientSecret: secret, Endpoint: provider.Endpoint(),
		RedirectURL: redirectURI, Scopes: []string{oidc.ScopeOpenID, "email", "profile", "groups"}}
	verifier := oauth2.GenerateVerifier()
	state, nonce := randomHex(), randomHex()
	authURL, _ := url.Parse(conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce)))

	client := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	page, err := client.Get(authURL.String())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(page.Body)
	page.Body.Close()
	if page.StatusCode != 200 || !strings.Contains(string(body), `id="login-`+user+`"`) {
		t.Fatalf("sign-in page: status %d, no button for %s:\n%.600s", page.StatusCode, user, body)
	}
	form := authURL.Query()
	form.Set("user", user)
	resp, err := client.PostForm(issuer+"/authorize", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	back, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(back.String(), redirectURI+"?") || back.Query().Get("state") != state {
		t.Fatalf("after choosing %s: status %d, Location %q; want 302 to %s with the state", user, resp.StatusCode, resp.Header.Get("Location"), redirectURI)
	}
	tok, err := conf.Exchange(ctx, back.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := provider.Verifier(&oidc.Config{ClientID: clientID}).Verify(ctx, raw)
	if err != nil {
		t.Fatalf("ID token: %v", err)
	}
	if idt.Nonce != nonce {
		t.Fatalf("ID token nonce %q, want %q", idt.Nonce, nonce)
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func randomHex() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func TestRun_DevIdP(t *testing.T) {
	const redirect = "http://127.0.0.1:4180/_gatehouse/callback"
	d := startDevIdPCmd(t, "-listen", "127.0.0.1:0", "-client-id", "wiki", "-client-secret", "dev-secret",
		"-user", "carol:auditors,staff", "-user", "dave@corp.example")

	if !strings.HasPrefix(d.issuer, "http://127.0.0.1:") || strings.HasSuffix(d.issuer, ":0") {
		t.Fatalf("issuer %q, want http://127.0.0.1:<the port bound>", d.issuer)
	}
	block := "oidc:\n  issuer: " + d.issuer + "\n  client_id: wiki\n  client_secret: dev-secret\n  scopes: [openid, email, profile, groups]\n"
	if !strings.HasSuffix(d.out.String(), block) || !strings.Contains(d.out.String(), "external_url: http://127.0.0.1:4180") {
		t.Errorf("welcome:\n%s\nwant it to end with the oidc block:\n%s", d.out.String(), block)
	}

	// Discovery names the issuer as printed.
	resp, err := http.Get(d.issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var disc struct{ Issuer string }
	_ = json.NewDecoder(resp.Body).Decode(&disc)
	resp.Body.Close()
	if resp.StatusCode != 200 || disc.Issuer != d.issuer {
		t.Fatalf("discovery: status %d, issuer %q; want 200, %q", resp.StatusCode, disc.Issuer, d.issuer)
	}

	claims := signInAs(t, d.issuer, "wiki", "dev-secret", redirect, "carol")
	groups, _ := claims["groups"].([]any)
	if claims["sub"] != "carol" || claims["email"] != "carol@example.com" || !slices.Equal(groups, []any{"auditors", "staff"}) {
		t.Errorf("carol's ID token claims: %v", claims)
	}
	claims = signInAs(t, d.issuer, "wiki", "dev-secret", redirect, "dave")
	if claims["sub"] != "dave" || claims["email"] != "dave@corp.example" {
		t.Errorf("dave's ID token claims: %v", claims)
	}

	// Cancelling the context stops it, exit 0.
	d.cancel()
	select {
	case code := <-d.code:
		if code != 0 {
			t.Errorf("exit %d after the context ended, want 0; stderr:\n%s", code, d.stderr.String())
		}
		d.code <- code // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("gatehouse devidp did not stop within 10s of its context ending")
	}
}

func TestRun_DevIdPUsersFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.yaml")
	if err := os.WriteFile(path, []byte("users:\n  - name: erin\n    email: erin@corp.example\n    display_name: Erin Example\n    groups: [admins]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const redirect = "http://localhost:8080/_gatehouse/callback"
	d := startDevIdPCmd(t, "-listen", "127.0.0.1:0", "-users", path, "-client-secret", "s", "-redirect-uri", redirect)
	claims := signInAs(t, d.issuer, "gatehouse", "s", redirect, "erin")
	if claims["email"] != "erin@corp.example" || claims["name"] != "Erin Example" {
		t.Errorf("erin's ID token claims: %v", claims)
	}
	if !strings.Contains(d.out.String(), "external_url: http://localhost:8080") {
		t.Errorf("welcome does not name the external_url of the redirect URI:\n%s", d.out.String())
	}
}

func TestRun_DevIdPRefuses(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "users.yaml")
	if err := os.WriteFile(bad, []byte("users:\n  - name: erin\n    password: hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"every interface", []string{"-listen", "0.0.0.0:0"}, 1,
			`gatehouse devidp: listen address "0.0.0.0:0" is not loopback: the development provider has no passwords, so anyone who reaches it can sign in as any user; listen on 127.0.0.1, [::1] or localhost` + "\n"},
		{"all interfaces, no host", []string{"-listen", ":4181"}, 1, `listen address ":4181" is not loopback`},
		{"a bad user", []string{"-user", "al ice:admins"}, 2,
			`gatehouse devidp: -user "al ice:admins": name "al ice" must be 1 to 64 letters, digits, '.', '_' or '-'; write NAME[:GROUP,GROUP...], e.g. alice:admins,staff` + "\n"},
		{"an unknown key in the users file", []string{"-listen", "127.0.0.1:0", "-users", bad}, 1, "the development provider has no passwords (people sign in by choosing a user), so remove it"},
		{"a relative redirect URI", []string{"-listen", "127.0.0.1:0", "-redirect-uri", "/cb"}, 1, `redirect uri: "/cb" is not an absolute uri`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runMain(t, append([]string{"devidp"}, tc.args...)...)
			if code != tc.code || stdout != "" || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("gatehouse devidp %s: exit %d, stdout %q, stderr %q; want exit %d, nothing, %q", strings.Join(tc.args, " "), code, stdout, stderr, tc.code, tc.stderr)
			}
		})
	}
}
