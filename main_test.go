package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/devca"
)

// runMain runs the program with args and returns its exit code and output.
func runMain(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(t.Context(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// wantRun compares a run's exit code and output.
func wantRun(t *testing.T, args []string, code int, stdout, stderr string) {
	t.Helper()
	gotCode, gotOut, gotErr := runMain(t, args...)
	if gotCode != code || gotOut != stdout || gotErr != stderr {
		t.Errorf("gatehouse %s\nexit %d, want %d\nstdout:\n%s\nwant:\n%s\nstderr:\n%s\nwant:\n%s",
			strings.Join(args, " "), gotCode, code, gotOut, stdout, gotErr, stderr)
	}
}

const validConfig = `external_url: https://app.example.com
upstream: http://127.0.0.1:8080
oidc:
  issuer: https://sso.example.com/realms/main
  client_id: gatehouse
  client_secret: s3cret
cookie:
  secret: this-is-a-32-byte-cookie-secret!
allow:
  email_domains: [example.com]
`

// writeConfig writes a configuration file into a temporary directory.
func writeConfig(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRun_Version(t *testing.T) {
	code, stdout, stderr := runMain(t, "version")
	if code != 0 || !strings.HasPrefix(stdout, "gatehouse ") || strings.Count(stdout, "\n") != 1 || stderr != "" {
		t.Errorf("gatehouse version: exit %d, stdout %q, stderr %q; want 0, one line \"gatehouse VERSION\", nothing", code, stdout, stderr)
	}
}

func TestRun_Help(t *testing.T) {
	wantRun(t, []string{"help"}, 0, usage, "")
	for _, want := range []string{"gatehouse [serve] -config FILE", "gatehouse check [-config] FILE", "-offline", "gatehouse demo", "gatehouse version"} {
		if !strings.Contains(usage, want) {
			t.Errorf("usage does not mention %q:\n%s", want, usage)
		}
	}
}

func TestRun_UnknownCommand(t *testing.T) {
	wantRun(t, []string{"frobnicate"}, 2, "", "gatehouse: unknown command \"frobnicate\"\n"+usage)
	wantRun(t, []string{"chek", "-config", "x.yaml"}, 2, "", "gatehouse: unknown command \"chek\"\n"+usage)
}

func TestRun_Check(t *testing.T) {
	t.Setenv("GATEHOUSE_CONFIG", "")
	valid := writeConfig(t, "gatehouse.yaml", validConfig)
	ok := valid + ": ok\nregister at your identity provider:\n  redirect URI:             https://app.example.com/_gatehouse/callback\n  post-logout redirect URI: https://app.example.com/_gatehouse/signed-out\n"

	t.Run("valid", func(t *testing.T) {
		wantRun(t, []string{"check", "-offline", "-config", valid}, 0, ok, "")
	})

	t.Run("valid with --config=", func(t *testing.T) {
		wantRun(t, []string{"check", "-offline", "--config=" + valid}, 0, ok, "")
	})

	t.Run("valid with warnings", func(t *testing.T) {
		path := writeConfig(t, "lab.yaml", strings.Replace(validConfig,
			"external_url: https://app.example.com", "external_url: http://gatehouse.lab:4180\ninsecure_allow_http: true", 1))
		wantRun(t, []string{"check", "-offline", "-config", path}, 0,
			"warning: insecure_allow_http is set: cookies and authorization codes may cross the network unencrypted\n"+
				path+": ok\n"+
				"register at your identity provider:\n  redirect URI:             http://gatehouse.lab:4180/_gatehouse/callback\n  post-logout redirect URI: http://gatehouse.lab:4180/_gatehouse/signed-out\n", "")
	})

	t.Run("valid with nested routes", func(t *testing.T) {
		path := writeConfig(t, "routes.yaml", validConfig+`routes:
  - match: {path_prefix: /admin}
    upstream: http://127.0.0.1:8081
  - match: {host: wiki.example.com}
    upstream: http://127.0.0.1:8082
  - match: {host: wiki.example.com, path_prefix: /edit}
    upstream: http://127.0.0.1:8082
  - match: {host: docs.example.com, path_prefix: /v2}
    upstream: http://127.0.0.1:8083
`)
		wantRun(t, []string{"check", "-offline", "-config", path}, 0,
			"note: routes inside another route (/admin, wiki.example.com/edit, docs.example.com/v2): an address with ';', a trailing dot or space, "+
				"or an encoded ';', '#' or '?' right after their path_prefix (e.g. /admin;jsessionid=X) is refused with 400, as servers would read it under different routes; "+
				"an app there must keep its session ID in a cookie, not in the path\n"+
				path+": ok\n"+
				"register at your identity provider:\n  redirect URI:             https://app.example.com/_gatehouse/callback\n  post-logout redirect URI: https://app.example.com/_gatehouse/signed-out\n", "")
	})

	t.Run("problems", func(t *testing.T) {
		path := writeConfig(t, "bad.yaml", `external_url: http://app.example.com
upstream: http://127.0.0.1:8080
oidc:
  issuer: https://sso.example.com/realms/main
  client_id: gatehouse
  client_secret: s3cret
  scopes: [email]
cookie:
  secret: too-short
allow:
  groups: []
`)
		wantRun(t, []string{"check", "-offline", "-config", path}, 1, "", path+": 4 configuration problem(s):\n"+
			"  external_url (line 1): http:// is allowed only for localhost and 127.0.0.1; use https://app.example.com, or set insecure_allow_http: true for a lab\n"+
			"  oidc.scopes (line 7): must include openid (got [email])\n"+
			"  cookie.secret (line 9): 9 bytes; need at least 32, e.g. openssl rand -base64 32\n"+
			"  allow.groups (line 11): an empty list allows nobody and is not \"anyone\"; list at least one value, or remove the key\n")
	})

	t.Run("no policy", func(t *testing.T) {
		path := writeConfig(t, "open.yaml", strings.Replace(validConfig, "allow:\n  email_domains: [example.com]\n", "", 1))
		wantRun(t, []string{"check", "-offline", "-config", path}, 1, "", path+": 1 configuration problem(s):\n"+
			"  allow: required: upstream (line 2) sends every request that no route matches through the top-level policy, and there is none; "+
			"add a top-level allow: list who may pass (emails, email_domains, groups or claims), or write allow: {any_user: true} to let every user the identity provider signs in pass\n")
	})

	t.Run("unknown key", func(t *testing.T) {
		path := writeConfig(t, "typo.yaml", validConfig+"sesion:\n  idle_timeout: 1h\n")
		wantRun(t, []string{"check", "-offline", "-config", path}, 1, "",
			path+": 1 configuration problem(s):\n  sesion (line 11): unknown key; did you mean session?\n")
	})

	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "missing.yaml")
		wantRun(t, []string{"check", "-offline", "-config", path}, 1, "", "read config: open "+path+": no such file or directory\n")
	})

	t.Run("no configuration", func(t *testing.T) {
		wantRun(t, []string{"check"}, 2, "", "gatehouse check: no configuration; give the file: gatehouse check FILE, -config FILE or $GATEHOUSE_CONFIG (gatehouse schema describes every key)\n")
	})

	t.Run("file as an argument", func(t *testing.T) {
		wantRun(t, []string{"check", "-offline", valid}, 0, ok, "")
		wantRun(t, []string{"check", valid, "-offline"}, 0, ok, "")
	})

	t.Run("file as an argument wins over GATEHOUSE_CONFIG", func(t *testing.T) {
		t.Setenv("GATEHOUSE_CONFIG", filepath.Join(t.TempDir(), "missing.yaml"))
		wantRun(t, []string{"check", "-offline", valid}, 0, ok, "")
	})

	t.Run("two files", func(t *testing.T) {
		wantRun(t, []string{"check", "-offline", valid, "other.yaml"}, 2, "",
			"gatehouse check: one configuration file, got \""+valid+"\" and \"other.yaml\"\n")
		wantRun(t, []string{"check", "-config", valid, "other.yaml"}, 2, "",
			"gatehouse check: give the configuration file once, with -config or as an argument, not both (got \""+valid+"\" and \"other.yaml\")\n")
	})

	t.Run("GATEHOUSE_CONFIG", func(t *testing.T) {
		t.Setenv("GATEHOUSE_CONFIG", valid)
		wantRun(t, []string{"check", "-offline"}, 0, ok, "")
	})

	t.Run("-config wins over GATEHOUSE_CONFIG", func(t *testing.T) {
		t.Setenv("GATEHOUSE_CONFIG", filepath.Join(t.TempDir(), "missing.yaml"))
		wantRun(t, []string{"check", "-offline", "-config", valid}, 0, ok, "")
	})

	t.Run("unknown flag", func(t *testing.T) {
		code, stdout, stderr := runMain(t, "check", "-confg", valid)
		if code != 2 || stdout != "" || !strings.HasPrefix(stderr, "flag provided but not defined: -confg\nUsage of check:\n") {
			t.Errorf("exit %d, stdout %q, stderr %q; want 2, nothing, the flag error and usage", code, stdout, stderr)
		}
	})

	t.Run("-config without a value", func(t *testing.T) {
		code, stdout, stderr := runMain(t, "check", "-config")
		if code != 2 || stdout != "" || !strings.HasPrefix(stderr, "flag needs an argument: -config\n") {
			t.Errorf("exit %d, stdout %q, stderr %q; want 2, nothing, the flag error", code, stdout, stderr)
		}
	})
}

// TestRun_CheckExamples runs gatehouse check on every example
// configuration, as the README tells operators to.
func TestRun_CheckExamples(t *testing.T) {
	t.Setenv("OIDC_CLIENT_SECRET", "example-client-secret")
	t.Setenv("COOKIE_SECRET", "gaZejjcawRpBTo+ZaZJuUFMP6aqDSyBmk7p+AvJmiFM=")
	t.Setenv("ENTRA_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47")
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("testdata/*.yaml: %v, %d files", err, len(files))
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			wantRun(t, []string{"check", "-offline", "-config", path}, 0,
				path+": ok\nregister at your identity provider:\n  redirect URI:             https://app.example.com/_gatehouse/callback\n  post-logout redirect URI: https://app.example.com/_gatehouse/signed-out\n", "")
		})
	}
}

// TestRun_ServeStopsOnConfigErrors checks that serve refuses to start
// without a valid configuration, before it listens.
func TestRun_ServeStopsOnConfigErrors(t *testing.T) {
	t.Setenv("GATEHOUSE_CONFIG", "")
	noConfig := "gatehouse serve: no configuration; give the file: gatehouse serve FILE, -config FILE or $GATEHOUSE_CONFIG (gatehouse schema describes every key)\n"
	wantRun(t, nil, 2, "", noConfig)
	wantRun(t, []string{"serve"}, 2, "", noConfig)
	bad := writeConfig(t, "bad.yaml", strings.Replace(validConfig, "  client_id: gatehouse\n", "", 1))
	wantRun(t, []string{"-config", bad}, 1, "", bad+": 1 configuration problem(s):\n  oidc.client_id: required; the client ID registered at your identity provider\n")
	// No policy: serve refuses to start rather than let everyone in.
	open := writeConfig(t, "open.yaml", strings.Replace(validConfig, "allow:\n  email_domains: [example.com]\n", "allow:\n", 1))
	wantRun(t, []string{"-config", open}, 1, "", open+": 1 configuration problem(s):\n"+
		"  allow (line 9): has no value, and an empty policy would let nobody in; list who may pass (emails, email_domains, groups or claims), or write allow: {any_user: true} to let every user the identity provider signs in pass\n")
}

// TestRun_HelpFlags: -h and --help print the usage, not the serve flags.
func TestRun_HelpFlags(t *testing.T) {
	t.Setenv("GATEHOUSE_CONFIG", "")
	for _, arg := range []string{"-h", "--help"} {
		t.Run(arg, func(t *testing.T) {
			code, stdout, stderr := runMain(t, arg)
			if code != 0 || stdout != usage {
				t.Errorf("gatehouse %s: exit %d, stdout %q, stderr %q; want exit 0 and the usage", arg, code, stdout, stderr)
			}
		})
	}
}

// TestRun_SessionsClient drives "gatehouse sessions" against a stand-in
// admin listener and checks what it asks and prints.
func TestRun_SessionsClient(t *testing.T) {
	var got []string
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.RequestURI()+" "+r.Header.Get("Authorization"))
		if r.Method == http.MethodGet {
			fmt.Fprint(w, `{"sub":"alice","sessions":[{"handle":"0123456789abcdef01234567","user":"alice","created":"2026-01-02T03:04:05Z","last_seen":"2026-01-02T03:05:05Z","client_ip":"192.0.2.7","user_agent":"curl/8"}]}`)
			return
		}
		fmt.Fprint(w, `{"revoked":1}`)
	}))
	defer admin.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret-admin-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runMain(t, "sessions", "list", "-sub", "alice", "-admin", admin.URL, "-token-file", tokenFile)
	if code != 0 || !strings.Contains(stdout, "0123456789abcdef01234567") || !strings.Contains(stdout, "192.0.2.7") {
		t.Errorf("list: exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	code, stdout, _ = runMain(t, "sessions", "revoke", "-handle", "0123456789abcdef01234567", "-admin", admin.URL, "-token-file", tokenFile)
	if code != 0 || !strings.Contains(stdout, `"revoked":1`) {
		t.Errorf("revoke: exit %d %q", code, stdout)
	}
	runMain(t, "sessions", "revoke", "-sub", "a b", "-admin", admin.URL, "-token-file", tokenFile)
	want := []string{
		"GET /sessions?sub=alice Bearer s3cret-admin-token",
		"DELETE /sessions/0123456789abcdef01234567 Bearer s3cret-admin-token",
		"DELETE /sessions?sub=a+b Bearer s3cret-admin-token",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if code, _, stderr := runMain(t, "sessions", "list", "-admin", admin.URL, "-token-file", tokenFile); code != 2 || !strings.Contains(stderr, "-sub") {
		t.Errorf("list without -sub: %d %q", code, stderr)
	}
}

func TestRun_CheckPrintRedactsSecrets(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "g.yaml")
	if err := os.WriteFile(path, []byte("external_url: https://app.example.com\nupstream: http://127.0.0.1:8080\noidc:\n  issuer: https://sso.example.com\n  client_id: c\n  client_secret: very-secret-client\ncookie:\n  secret: "+strings.Repeat("k", 32)+"\n  previous_secrets: ["+strings.Repeat("p", 32)+"]\nallow: {any_user: true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ := runMain(t, "check", "-offline", "-print", "-config", path)
	if code != 0 || strings.Contains(stdout, "very-secret-client") || strings.Contains(stdout, strings.Repeat("k", 32)) || strings.Contains(stdout, strings.Repeat("p", 32)) {
		t.Fatalf("exit %d; secrets in output:\n%s", code, stdout)
	}
	for _, want := range []string{"client_secret: <redacted>", "idle_timeout: 30m0s", "name: default", "max_sessions: 100000"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("effective configuration lacks %q:\n%s", want, stdout)
		}
	}
}

func TestRun_Schema(t *testing.T) {
	code, stdout, _ := runMain(t, "schema")
	want, err := os.ReadFile("gatehouse.schema.json")
	if code != 0 || err != nil || stdout != string(want) {
		t.Errorf("gatehouse schema: exit %d, differs from gatehouse.schema.json: %v", code, err)
	}
}

// TestRun_DemoTLS: `gatehouse demo -tls` serves gatehouse on https and
// tells how to trust its throwaway certificate.
func TestRun_DemoTLS(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // the demo starts, prints its welcome and stops at once
	var out, errOut bytes.Buffer
	code := run(ctx, []string{"demo", "-tls", "-listen", "127.0.0.1:0", "-idp-listen", "127.0.0.1:0", "-app-listen", "127.0.0.1:0"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut.String())
	}
	fp := regexp.MustCompile(`--ignore-certificate-errors-spki-list=([A-Za-z0-9+/]{43}=) `).FindStringSubmatch(out.String())
	if !strings.Contains(out.String(), "Open  https://127.0.0.1:") || fp == nil {
		t.Errorf("welcome lacks the https URL or a base64 SHA-256 fingerprint:\n%s", out.String())
	}
}

// TestRun_CheckTLS: check validates the TLS pair, and warns about one
// that expires within 14 days.
func TestRun_CheckTLS(t *testing.T) {
	ca, err := devca.New("check test CA")
	if err != nil {
		t.Fatal(err)
	}
	soon, err := ca.Issue([]string{"app.example.com"}, time.Now().Add(-time.Hour), time.Now().Add(5*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := soon.Write(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	path := writeConfig(t, "gatehouse.yaml", validConfig+"tls:\n  cert_file: "+certFile+"\n  key_file: "+keyFile+"\n")
	code, stdout, stderr := runMain(t, "check", "-offline", "-config", path)
	if code != 0 || !strings.Contains(stdout, "warning: tls.cert_file ("+certFile+"): the certificate expires at") || !strings.Contains(stdout, path+": ok") {
		t.Errorf("check: exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit 0 with an expiry warning", code, stdout, stderr)
	}
	other, _ := ca.IssueFor("other.example.com")
	if err := other.Write(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runMain(t, "check", "-offline", "-config", path)
	if code != 1 || !strings.Contains(stderr, "tls.cert_file (line 12): "+certFile+": the certificate names DNS:other.example.com, not external_url's host app.example.com") {
		t.Errorf("check with a certificate for another host: exit %d\nstderr:\n%s", code, stderr)
	}
}
