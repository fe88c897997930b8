package config

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// baseYAML is the smallest valid configuration but for its policy. Cases
// change one thing in it with edit or add to it with plus; its line
// numbers are
//
//	1 external_url   3 oidc:           6   client_secret
//	2 upstream       4   issuer        7 cookie:
//	                 5   client_id     8   secret
//
// and whatever plus appends starts on line 9. runParseCases adds
// testAllow at the very end unless the case gives a top-level allow (or
// sets noAllow), so that the line numbers stay.
const baseYAML = `external_url: https://app.example.com
upstream: http://127.0.0.1:8080
oidc:
  issuer: https://sso.example.com/realms/main
  client_id: gatehouse
  client_secret: s3cret
cookie:
  secret: this-is-a-32-byte-cookie-secret!
`

// testAllow is the policy edit and plus add when a case gives none.
const testAllow = "allow:\n  email_domains: [example.com]\n"

// validYAML is the smallest valid configuration: baseYAML and testAllow.
const validYAML = baseYAML + testAllow

// withAllow appends testAllow to y unless it has a top-level allow.
func withAllow(y string) string {
	if strings.HasPrefix(y, "allow:") || strings.Contains(y, "\nallow:") {
		return y
	}
	if !strings.HasSuffix(y, "\n") {
		y += "\n"
	}
	return y + testAllow
}

// rawSecret is validYAML's cookie secret: 32 bytes that are not base64,
// so they are the key as they are.
const rawSecret = "this-is-a-32-byte-cookie-secret!"

// edit returns validYAML with old, which must occur exactly once, replaced
// by new.
func edit(old, new string) string {
	if n := strings.Count(baseYAML, old); n != 1 {
		panic(fmt.Sprintf("edit: %q occurs %d times in baseYAML", old, n))
	}
	return strings.Replace(baseYAML, old, new, 1)
}

// plus returns baseYAML with extra appended from line 9.
func plus(extra string) string { return baseYAML + extra }

// testKey returns 32 fixed bytes that look random, different for each n.
func testKey(n int) []byte {
	k := sha256.Sum256(fmt.Appendf(nil, "gatehouse test key %d", n))
	return k[:]
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// testEnv is the environment every case sees; a case's env adds to it.
func testEnv(extra map[string]string) func(string) (string, bool) {
	env := map[string]string{
		"OIDC_CLIENT_SECRET": "env-client-secret",
		"COOKIE_SECRET":      b64(testKey(1)),
		"EMPTY":              "",
	}
	maps.Copy(env, extra)
	return func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
}

// secretFiles are written to the working directory of every case, so
// that *_file keys can name them relatively.
var secretFiles = map[string]string{
	"client.secret":      "from-file\n",
	"client-crlf.secret": "from-file\r\n",
	"empty.secret":       "",
	"newline.secret":     "\n\n",
	"cookie.secret":      b64(testKey(1)) + "\n",
	"short.secret":       "short\n",
}

// chdirSecrets moves the test into a fresh directory holding secretFiles.
func chdirSecrets(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	for name, content := range secretFiles {
		if err := os.WriteFile(dir+"/"+name, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
}

// problems returns the Problem.String of every problem in err, which must
// be nil or an *Error.
func problems(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error is %T (%v), want *config.Error", err, err)
	}
	if len(ce.Problems) == 0 {
		t.Fatalf("*Error without problems: %v", err)
	}
	var out []string
	for _, p := range ce.Problems {
		out = append(out, p.String())
	}
	return out
}

func lines(ss []string) string {
	if len(ss) == 0 {
		return "\t(none)"
	}
	return "\t" + strings.Join(ss, "\n\t")
}

func numbered(doc string) string {
	var b strings.Builder
	for i, l := range strings.Split(strings.TrimSuffix(doc, "\n"), "\n") {
		fmt.Fprintf(&b, "\t%2d| %s\n", i+1, l)
	}
	return b.String()
}

type parseCase struct {
	name     string
	yaml     string
	env      map[string]string // on top of testEnv
	want     []string          // every Problem.String(), in order; nil when valid
	warnings []string          // cfg.Warnings when valid
	check    func(t *testing.T, c *Config)
	noAllow  bool // parse yaml as it is, without testAllow
}

// runParseCases parses each case in a directory holding secretFiles and
// compares the full list of problems, then the warnings and check.
func runParseCases(t *testing.T, cases []parseCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			chdirSecrets(t)
			if !tc.noAllow {
				tc.yaml = withAllow(tc.yaml)
			}
			cfg, err := Parse([]byte(tc.yaml), testEnv(tc.env))
			if got := problems(t, err); !slices.Equal(got, tc.want) {
				t.Fatalf("Parse of\n%sproblems:\n%s\nwant:\n%s", numbered(tc.yaml), lines(got), lines(tc.want))
			}
			if err != nil {
				if cfg != nil {
					t.Errorf("Parse returned a config along with an error")
				}
				return
			}
			if cfg == nil {
				t.Fatal("Parse returned neither a config nor an error")
			}
			if !slices.Equal(cfg.Warnings, tc.warnings) {
				t.Errorf("warnings:\n%s\nwant:\n%s", lines(cfg.Warnings), lines(tc.warnings))
			}
			if tc.check != nil {
				tc.check(t, cfg)
			}
		})
	}
}

// equal reports got != want as an error naming what.
func equal[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

const (
	reqExternal     = "external_url: required; e.g. https://app.example.com"
	reqUpstream     = "upstream: required; e.g. http://127.0.0.1:8080"
	reqIssuer       = "oidc.issuer: required; e.g. https://login.example.com/realms/main"
	reqClientID     = "oidc.client_id: required; the client ID registered at your identity provider"
	reqClientSecret = "oidc.client_secret: required; give client_secret (e.g. ${OIDC_CLIENT_SECRET}) or client_secret_file"
	reqCookieSecret = "cookie.secret: required; at least 32 random bytes, e.g. openssl rand -base64 32"
)

func TestParse_Required(t *testing.T) {
	runParseCases(t, []parseCase{
		{
			name: "valid minimal config",
			yaml: validYAML,
		},
		{
			name: "empty document",
			yaml: "",
			want: []string{reqExternal, reqUpstream, reqIssuer, reqClientID, reqClientSecret, reqCookieSecret},
		},
		{
			name: "comments only",
			yaml: "# nothing configured yet\n",
			want: []string{reqExternal, reqUpstream, reqIssuer, reqClientID, reqClientSecret, reqCookieSecret},
		},
		{
			name: "external_url missing",
			yaml: edit("external_url: https://app.example.com\n", ""),
			want: []string{reqExternal},
		},
		{
			name: "external_url empty",
			yaml: edit("external_url: https://app.example.com", `external_url: ""`),
			want: []string{"external_url (line 1): required; e.g. https://app.example.com"},
		},
		{
			name: "upstream missing",
			yaml: edit("upstream: http://127.0.0.1:8080\n", ""),
			want: []string{reqUpstream},
		},
		{
			name: "upstream with no value",
			yaml: edit("upstream: http://127.0.0.1:8080", "upstream:"),
			want: []string{"upstream (line 2): required; e.g. http://127.0.0.1:8080"},
		},
		{
			name: "oidc section missing",
			yaml: edit("oidc:\n  issuer: https://sso.example.com/realms/main\n  client_id: gatehouse\n  client_secret: s3cret\n", ""),
			want: []string{reqIssuer, reqClientID, reqClientSecret},
		},
		{
			name: "oidc.issuer missing",
			yaml: edit("  issuer: https://sso.example.com/realms/main\n", ""),
			want: []string{reqIssuer},
		},
		{
			name: "oidc.client_id missing",
			yaml: edit("  client_id: gatehouse\n", ""),
			want: []string{reqClientID},
		},
		{
			name: "oidc.client_id empty",
			yaml: edit("  client_id: gatehouse", `  client_id: ""`),
			want: []string{"oidc.client_id (line 5): required; the client ID registered at your identity provider"},
		},
		{
			name: "oidc.client_secret and client_secret_file missing",
			yaml: edit("  client_secret: s3cret\n", ""),
			want: []string{reqClientSecret},
		},
		{
			name: "cookie section missing",
			yaml: edit("cookie:\n  secret: "+rawSecret+"\n", ""),
			want: []string{reqCookieSecret},
		},
		{
			name: "cookie.secret and secret_file missing",
			yaml: edit("  secret: "+rawSecret+"\n", ""),
			want: []string{reqCookieSecret},
		},
	})
}

func TestParse_Keys(t *testing.T) {
	runParseCases(t, []parseCase{
		{
			name: "unknown top-level key suggests the closest",
			yaml: plus("upstream_timout: 5s\n"),
			want: []string{"upstream_timout (line 9): unknown key; did you mean upstream_timeout?"},
		},
		{
			name: "unknown nested key suggests the closest",
			yaml: edit("  client_id: gatehouse", "  clientid: gatehouse"),
			want: []string{"oidc.clientid (line 5): unknown key; did you mean client_id?"},
		},
		{
			name: "unknown key in a section that is not in the minimal config",
			yaml: plus("session:\n  idle_timout: 5m\n"),
			want: []string{"session.idle_timout (line 10): unknown key; did you mean idle_timeout?"},
		},
		{
			name: "keys are case-sensitive",
			yaml: plus("Listen: :4180\n"),
			want: []string{"Listen (line 9): unknown key; did you mean listen?"},
		},
		{
			name: "unknown top-level key far from any lists the known keys",
			yaml: plus("kubernetes_namespace: []\n"),
			want: []string{"kubernetes_namespace (line 9): unknown key; known keys here: admin, allow, assertion, bearer, cookie, external_url, forward_auth, headers, insecure_allow_http, listen, log, oidc, redirect_allow_hosts, routes, server, session, tls, trusted_proxies, ui, upstream, upstream_timeout"},
		},
		{
			name: "unknown nested key far from any lists the section's keys",
			yaml: plus("server:\n  tls: true\n"),
			want: []string{"server.tls (line 10): unknown key; known keys here: idle_timeout, max_header_bytes, min_body_rate, read_body_timeout, read_header_timeout, shutdown_timeout"},
		},
		{
			name: "top-level key given twice",
			yaml: plus("upstream: http://127.0.0.1:9090\n"),
			want: []string{"upstream (line 9): key given twice; keep one"},
		},
		{
			name: "nested key given twice",
			yaml: edit("  client_id: gatehouse\n", "  client_id: gatehouse\n  client_id: other\n"),
			want: []string{"oidc.client_id (line 6): key given twice; keep one"},
		},
		{
			name: "section given twice",
			yaml: plus("cookie:\n  name: sid\n"),
			want: []string{"cookie (line 9): key given twice; keep one"},
		},
		{
			name: "unknown key given twice is reported twice",
			yaml: plus("lisen: :1\nlisen: :2\n"),
			want: []string{
				"lisen (line 9): unknown key; did you mean listen?",
				"lisen (line 10): unknown key; did you mean listen?",
			},
		},
	})
}

func TestParse_Types(t *testing.T) {
	runParseCases(t, []parseCase{
		{
			name: "list where a single value is expected",
			yaml: plus("listen: [127.0.0.1, 4180]\n"),
			want: []string{"listen (line 9): expected a single value, not a list or mapping"},
		},
		{
			name: "mapping where a single value is expected",
			yaml: edit("  client_id: gatehouse", "  client_id: {id: gatehouse}"),
			want: []string{"oidc.client_id (line 5): expected a single value, not a list or mapping"},
		},
		{
			name: "mapping where a list is expected",
			yaml: edit("  client_id: gatehouse\n", "  client_id: gatehouse\n  scopes: {openid: true}\n"),
			want: []string{`oidc.scopes (line 6): expected a list, e.g. [a, b] or one "- item" per line`},
		},
		{
			name: "single value where a list is expected",
			yaml: plus("allow:\n  emails: alice@example.com\n"),
			want: []string{`allow.emails (line 10): expected a list, e.g. [a, b] or one "- item" per line`},
		},
		{
			name: "list where a mapping is expected",
			yaml: plus("server: [10s, 2m]\n"),
			want: []string{"server (line 9): expected a mapping of keys to values"},
		},
		{
			name: "single value where a mapping is expected",
			yaml: edit("cookie:\n  secret: "+rawSecret+"\n", "cookie: "+rawSecret+"\n"),
			want: []string{"cookie (line 7): expected a mapping of keys to values"},
		},
		{
			name: "bad bool",
			yaml: plus("insecure_allow_http: yes\n"),
			want: []string{`insecure_allow_http (line 9): "yes" is not true or false`},
		},
		{
			name: "bad nested bool",
			yaml: edit("  client_id: gatehouse\n", "  client_id: gatehouse\n  logout_at_idp: sometimes\n"),
			want: []string{`oidc.logout_at_idp (line 6): "sometimes" is not true or false`},
		},
		{
			name: "bad int",
			yaml: plus("session:\n  max_sessions: 1.5\n"),
			want: []string{`session.max_sessions (line 10): "1.5" is not a whole number`},
		},
		{
			name: "int out of range",
			yaml: plus("session:\n  max_sessions: 99999999999999999999\n"),
			want: []string{`session.max_sessions (line 10): "99999999999999999999" is not a whole number`},
		},
		{
			name: "bad duration",
			yaml: plus("upstream_timeout: 30x\n"),
			want: []string{`upstream_timeout (line 9): "30x" is not a duration; write a Go duration such as 90s, 30m or 12h`},
		},
		{
			name: "duration without a unit",
			yaml: plus("session:\n  idle_timeout: 30\n"),
			want: []string{`session.idle_timeout (line 10): "30" is not a duration; write a Go duration such as 90s, 30m or 12h`},
		},
		{
			name: "every type error at once, in file order",
			yaml: plus("listen: [a]\nupstream_timeout: 1y\nsession:\n  max_sessions: many\n  idle_timeout: {}\nserver: on\n"),
			want: []string{
				"listen (line 9): expected a single value, not a list or mapping",
				`upstream_timeout (line 10): "1y" is not a duration; write a Go duration such as 90s, 30m or 12h`,
				`session.max_sessions (line 12): "many" is not a whole number`,
				"session.idle_timeout (line 13): expected a single value, not a list or mapping",
				"server (line 14): expected a mapping of keys to values",
			},
		},
		{
			name: "int with underscores, quoted values and bool spellings",
			yaml: plus("upstream_timeout: \"1m30s\"\ninsecure_allow_http: TRUE\nsession:\n  max_sessions: 1_000\nserver:\n  max_header_bytes: \"8192\"\n"),
			warnings: []string{
				"insecure_allow_http is set: cookies and authorization codes may cross the network unencrypted",
			},
			check: func(t *testing.T, c *Config) {
				equal(t, "UpstreamTimeout", c.UpstreamTimeout, 90*time.Second)
				equal(t, "InsecureAllowHTTP", c.InsecureAllowHTTP, true)
				equal(t, "MaxSessions", c.Session.MaxSessions, 1000)
				equal(t, "MaxHeaderBytes", c.Server.MaxHeaderBytes, 8192)
			},
		},
		{
			name: "a number where a string is expected is taken as written",
			yaml: edit("  client_id: gatehouse", "  client_id: 0123456789"),
			check: func(t *testing.T, c *Config) {
				equal(t, "ClientID", c.OIDC.ClientID, "0123456789")
			},
		},
		{
			name: "a key with no value keeps the default",
			yaml: plus("listen:\nupstream_timeout: ~\nsession:\n  max_sessions: null\n"),
			check: func(t *testing.T, c *Config) {
				equal(t, "Listen", c.Listen, "127.0.0.1:4180")
				equal(t, "UpstreamTimeout", c.UpstreamTimeout, 30*time.Second)
				equal(t, "MaxSessions", c.Session.MaxSessions, 100000)
			},
		},
		{
			name: "logout_at_idp with no value keeps the default true",
			yaml: edit("  client_id: gatehouse\n", "  client_id: gatehouse\n  logout_at_idp:\n"),
			check: func(t *testing.T, c *Config) {
				if c.OIDC.LogoutAtIdP == nil || !*c.OIDC.LogoutAtIdP {
					t.Errorf("LogoutAtIdP = %v, want true", c.OIDC.LogoutAtIdP)
				}
			},
		},
		{
			name: "logout_at_idp false",
			yaml: edit("  client_id: gatehouse\n", "  client_id: gatehouse\n  logout_at_idp: false\n"),
			check: func(t *testing.T, c *Config) {
				if c.OIDC.LogoutAtIdP == nil || *c.OIDC.LogoutAtIdP {
					t.Errorf("LogoutAtIdP = %v, want false", c.OIDC.LogoutAtIdP)
				}
			},
		},
		{
			name: "session.self_service false",
			yaml: plus("session:\n  self_service: false\n"),
			check: func(t *testing.T, c *Config) {
				if c.Session.SelfService == nil || *c.Session.SelfService {
					t.Errorf("SelfService = %v, want false", c.Session.SelfService)
				}
			},
		},
	})
}

func TestParse_Env(t *testing.T) {
	runParseCases(t, []parseCase{
		{
			name: "variable expanded",
			yaml: edit("  client_secret: s3cret", "  client_secret: ${OIDC_CLIENT_SECRET}"),
			check: func(t *testing.T, c *Config) {
				equal(t, "ClientSecret", c.OIDC.ClientSecret, "env-client-secret")
			},
		},
		{
			name: "variables inside a value",
			yaml: edit("upstream: http://127.0.0.1:8080", "upstream: http://${UPSTREAM_HOST}:${UPSTREAM_PORT}/app"),
			env:  map[string]string{"UPSTREAM_HOST": "10.0.0.7", "UPSTREAM_PORT": "9000"},
			check: func(t *testing.T, c *Config) {
				equal(t, "Upstream", c.Upstream, "http://10.0.0.7:9000/app")
				equal(t, "UpstreamURL.Host", c.UpstreamURL.Host, "10.0.0.7:9000")
			},
		},
		{
			name: "variable in a duration",
			yaml: plus("upstream_timeout: ${UPSTREAM_TIMEOUT}\n"),
			env:  map[string]string{"UPSTREAM_TIMEOUT": "45s"},
			check: func(t *testing.T, c *Config) {
				equal(t, "UpstreamTimeout", c.UpstreamTimeout, 45*time.Second)
			},
		},
		{
			name: "expanded value is checked and shown",
			yaml: plus("session:\n  max_sessions: ${MAX_SESSIONS}\n"),
			env:  map[string]string{"MAX_SESSIONS": "lots"},
			want: []string{`session.max_sessions (line 10): "lots" is not a whole number`},
		},
		{
			name: "unset variable names the variable",
			yaml: edit("  client_secret: s3cret", "  client_secret: ${OIDC_SECRET_TYPO}"),
			want: []string{"oidc.client_secret (line 6): environment variable OIDC_SECRET_TYPO is not set; export it or change the value"},
		},
		{
			name: "variable set to empty expands to empty",
			yaml: edit("  client_secret: s3cret", "  client_secret: ${EMPTY}"),
			want: []string{"oidc.client_secret (line 6): required; give client_secret (e.g. ${OIDC_CLIENT_SECRET}) or client_secret_file"},
		},
		{
			name: "$${ is a literal ${",
			yaml: edit("  client_secret: s3cret", "  client_secret: $${NOT_EXPANDED}"),
			check: func(t *testing.T, c *Config) {
				equal(t, "ClientSecret", c.OIDC.ClientSecret, "${NOT_EXPANDED}")
			},
		},
		{
			name: "bare $ is kept",
			yaml: edit("  client_secret: s3cret", "  client_secret: pa$$w$rd$"),
			check: func(t *testing.T, c *Config) {
				equal(t, "ClientSecret", c.OIDC.ClientSecret, "pa$$w$rd$")
			},
		},
		{
			name: "bare $ next to a variable is kept",
			yaml: edit("  client_secret: s3cret", `  client_secret: "$5${EMPTY}$"`),
			check: func(t *testing.T, c *Config) {
				equal(t, "ClientSecret", c.OIDC.ClientSecret, "$5$")
			},
		},
		{
			name: "a value is expanded once, not again",
			yaml: edit("  client_secret: s3cret", "  client_secret: ${OIDC_CLIENT_SECRET}"),
			env:  map[string]string{"OIDC_CLIENT_SECRET": "${COOKIE_SECRET}"},
			check: func(t *testing.T, c *Config) {
				equal(t, "ClientSecret", c.OIDC.ClientSecret, "${COOKIE_SECRET}")
			},
		},
		{
			name: "name starting with a digit",
			yaml: edit("  client_secret: s3cret", "  client_secret: ${1PASSWORD}"),
			want: []string{`oidc.client_secret (line 6): "1PASSWORD" is not a variable name; use letters, digits and _ as in ${COOKIE_SECRET}`},
		},
		{
			name: "name with a dash",
			yaml: edit("  client_secret: s3cret", "  client_secret: ${OIDC-SECRET}"),
			want: []string{`oidc.client_secret (line 6): "OIDC-SECRET" is not a variable name; use letters, digits and _ as in ${COOKIE_SECRET}`},
		},
		{
			name: "empty name",
			yaml: edit("  client_secret: s3cret", "  client_secret: ${}"),
			want: []string{`oidc.client_secret (line 6): "" is not a variable name; use letters, digits and _ as in ${COOKIE_SECRET}`},
		},
		{
			name: "unclosed",
			yaml: edit("upstream: http://127.0.0.1:8080", "upstream: http://${UPSTREAM_HOST:8080"),
			want: []string{`upstream (line 2): unclosed ${ (at character 8); write ${NAME}, or $${ for a literal ${`},
		},
		{
			name: "lower-case name is allowed",
			yaml: edit("  client_secret: s3cret", "  client_secret: ${oidc_secret}"),
			env:  map[string]string{"oidc_secret": "lower"},
			check: func(t *testing.T, c *Config) {
				equal(t, "ClientSecret", c.OIDC.ClientSecret, "lower")
			},
		},
		{
			name: "every variable problem at once",
			yaml: edit("  client_id: gatehouse\n  client_secret: s3cret", "  client_id: ${CLIENT_ID}\n  client_secret: ${CLIENT_SECRET}"),
			want: []string{
				"oidc.client_id (line 5): environment variable CLIENT_ID is not set; export it or change the value",
				"oidc.client_secret (line 6): environment variable CLIENT_SECRET is not set; export it or change the value",
			},
		},
	})
}

func TestParse_YAML(t *testing.T) {
	const anchors = "YAML anchors and aliases are not supported; write the value out"
	runParseCases(t, []parseCase{
		{
			name: "anchor on a value",
			yaml: edit("  client_id: gatehouse", "  client_id: &id gatehouse"),
			want: []string{"oidc.client_id (line 5): " + anchors},
		},
		{
			name: "anchor and alias",
			yaml: edit("  client_id: gatehouse\n", "  client_id: &id gatehouse\n  user_claim: *id\n"),
			want: []string{"oidc.client_id (line 5): " + anchors, "oidc.user_claim (line 6): " + anchors},
		},
		{
			name: "anchor on a section",
			yaml: edit("cookie:\n", "cookie: &cookie\n"),
			want: []string{"cookie (line 7): " + anchors},
		},
		{
			name: "merge key",
			yaml: plus("session:\n  <<: {idle_timeout: 5m}\n"),
			want: []string{"session.<< (line 10): merge keys and complex keys are not supported"},
		},
		{
			name: "complex key",
			yaml: plus("? [a, b]\n: c\n"),
			want: []string{"line 9: merge keys and complex keys are not supported"},
		},
		{
			name: "tab indentation",
			yaml: plus("session:\n\tidle_timeout: 5m\n"),
			want: []string{"line 10: not valid YAML: found character that cannot start any token\n" +
				"     8 |   secret: <redacted>\n" +
				"     9 | session:\n" +
				"    10 | \tidle_timeout: 5m\n" +
				"       | ^\n" +
				"    hint: tabs are not allowed in YAML indentation; indent with spaces"},
		},
		{
			name: "unterminated quote",
			yaml: plus("listen: \"127.0.0.1:4180\n"),
			want: []string{"line 9: not valid YAML: found unexpected end of stream\n" +
				"    7 | cookie:\n" +
				"    8 |   secret: <redacted>\n" +
				"    9 | listen: \"127.0.0.1:4180\n" +
				"      |         ^\n" +
				"    hint: a quoted value is not closed; close it with the same quote it opens with"},
		},
		{
			name:    "document is a list",
			yaml:    "- external_url: https://app.example.com\n",
			want:    []string{"line 1: expected a mapping of keys to values"},
			noAllow: true,
		},
		{
			name:    "document is a single value",
			yaml:    "gatehouse\n",
			want:    []string{"line 1: expected a mapping of keys to values"},
			noAllow: true,
		},
		{
			name: "explicit document markers",
			yaml: "---\n" + validYAML + "...\n",
		},
	})
}

// TestParse_SeveralProblems checks that every problem is reported at once,
// in the order validation meets them, and that problems found while
// decoding (types, keys, variables) are reported without the validation
// problems, which need a fully decoded configuration.
func TestParse_SeveralProblems(t *testing.T) {
	runParseCases(t, []parseCase{
		{
			name: "validation problems across sections",
			yaml: `listen: localhost
external_url: https://app.example.com/app
upstream: http://127.0.0.1:8080
oidc:
  issuer: http://sso.example.com
  client_id: ""
  client_secret: s3cret
  scopes: [email]
cookie:
  name: __Host-sid
  secret: too-short
  previous_secrets: [old]
session:
  idle_timeout: 12h
  max_sessions: -1
headers:
  user: X-User
  email: x_user
allow:
  emails: [alice]
  email_domains: ["@example.com"]
server:
  max_header_bytes: 100
`,
			want: []string{
				`listen (line 1): "localhost" is not host:port; write e.g. 127.0.0.1:4180 or :4180`,
				`external_url (line 2): must not have a path ("/app"): gatehouse serves its own endpoints at /_gatehouse/ on the host's root`,
				"oidc.issuer (line 5): http:// is allowed only for localhost and 127.0.0.1; use https://sso.example.com, or set insecure_allow_http: true for a lab",
				"oidc.client_id (line 6): required; the client ID registered at your identity provider",
				"oidc.scopes (line 8): must include openid (got [email])",
				`cookie.name (line 10): "__Host-sid": leave out the prefix; gatehouse adds __Host- itself when external_url is https`,
				"cookie.secret (line 11): 9 bytes; need at least 32, e.g. openssl rand -base64 32",
				"cookie.previous_secrets[0] (line 12): 3 bytes; need at least 32, e.g. openssl rand -base64 32",
				"session.idle_timeout (line 14): must not be longer than session.absolute_timeout (got 12h0m0s > 8h0m0s)",
				"session.max_sessions (line 15): must be at least 1 (got -1)",
				`headers.email (line 18): "x_user" is already used by headers.user; each identity header needs its own name`,
				`allow.emails[0] (line 20): "alice" is not an email address; write one address with a single @`,
				`allow.email_domains[0] (line 21): "@example.com" is not a domain; write example.com, or *.example.com for its subdomains`,
				"server.max_header_bytes (line 23): must be between 4096 and 1048576 (got 100)",
			},
		},
		{
			name: "decoding problems hide validation problems",
			yaml: `external_url: https://app.example.com/app
upstream: http://127.0.0.1:8080
oidc:
  issuer: https://sso.example.com
  client_id: gatehouse
  client_secret: ${MISSING_SECRET}
  scopes: openid
cookie:
  secret: too-short
  nmae: sid
session:
  idle_timeout: 10
session:
  idle_timeout: 5m
upstream_timeout: &t 5s
`,
			want: []string{
				"oidc.client_secret (line 6): environment variable MISSING_SECRET is not set; export it or change the value",
				`oidc.scopes (line 7): expected a list, e.g. [a, b] or one "- item" per line`,
				"cookie.nmae (line 10): unknown key; did you mean name?",
				`session.idle_timeout (line 12): "10" is not a duration; write a Go duration such as 90s, 30m or 12h`,
				"session (line 13): key given twice; keep one",
				"upstream_timeout (line 15): YAML anchors and aliases are not supported; write the value out",
			},
		},
	})
}

// TestParse_Defaults checks every field of the minimal configuration, so
// that each default the doc comments promise is the one applied.
func TestParse_Defaults(t *testing.T) {
	cfg, err := Parse([]byte(validYAML), testEnv(nil))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	logoutAtIdP := true
	localCache := 10000
	want := &Config{
		Listen:          "127.0.0.1:4180",
		ExternalURL:     "https://app.example.com",
		Upstream:        "http://127.0.0.1:8080",
		UpstreamTimeout: 30 * time.Second,
		OIDC: OIDC{
			Issuer:                "https://sso.example.com/realms/main",
			ClientID:              "gatehouse",
			ClientSecret:          "s3cret",
			Scopes:                []string{"openid", "email", "profile"},
			GroupsClaim:           "groups",
			UserClaim:             "sub",
			LogoutAtIdP:           &logoutAtIdP,
			PostLogoutRedirectURL: "https://app.example.com/_gatehouse/signed-out",
			Timeout:               10 * time.Second,
		},
		Cookie: Cookie{
			Name:       "gatehouse",
			Secret:     rawSecret,
			Persistent: &logoutAtIdP, // default true, like logout_at_idp
			Keys:       [][]byte{[]byte(rawSecret)},
		},
		Session: Session{
			IdleTimeout:            30 * time.Minute,
			AbsoluteTimeout:        8 * time.Hour,
			MaxSessions:            100000,
			MaxPerUser:             10,
			RefreshBefore:          time.Minute,
			PreservePostsMaxBytes:  DefaultPreservePostsMaxBytes,
			Store:                  "memory",
			TouchInterval:          time.Second,
			Redis:                  Redis{KeyPrefix: "gatehouse:", Timeout: 500 * time.Millisecond, LocalCache: &localCache},
			SelfService:            &logoutAtIdP,
			DeviceBinding:          "prefer",
			DeviceBindingCookieTTL: 5 * time.Minute,
			DeviceBindingGrace:     30 * time.Second,
			DeviceBindingViolation: "deny",
		},
		Assertion: Assertion{Enabled: &logoutAtIdP, Header: "X-Gatehouse-Assertion", Lifetime: 5 * time.Minute},
		Log:       Log{Level: "info", Format: "auto"},
		UI:        UI{Title: "gatehouse"},
		Headers: Headers{
			User:   "X-Forwarded-User",
			Email:  "X-Forwarded-Email",
			Groups: "X-Forwarded-Groups",
			Name:   "X-Forwarded-Preferred-Username",
		},
		Server: Server{
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			ShutdownTimeout:   30 * time.Second,
			ReadBodyTimeout:   10 * time.Second,
			MinBodyRate:       1024,
		},
		External:       &url.URL{Scheme: "https", Host: "app.example.com"},
		UpstreamURL:    &url.URL{Scheme: "http", Host: "127.0.0.1:8080"},
		TrustedProxies: []string{"127.0.0.0/8", "::1/128"},
		TrustedNets:    []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		ForwardAuth:    ForwardAuth{Mode: "nginx"},
		// The top-level upstream and allow become the catch-all route.
		Allow: Allow{EmailDomains: []string{"example.com"}},
		Routes: []Route{{Name: "default", Match: RouteMatch{PathPrefix: "/"}, Upstream: "http://127.0.0.1:8080",
			Allow: &Allow{EmailDomains: []string{"example.com"}}, UpstreamURL: &url.URL{Scheme: "http", Host: "127.0.0.1:8080"}}},
	}
	gv, wv := reflect.ValueOf(cfg).Elem(), reflect.ValueOf(want).Elem()
	for i := range gv.NumField() {
		if g, w := gv.Field(i).Interface(), wv.Field(i).Interface(); !reflect.DeepEqual(g, w) {
			t.Errorf("%s:\n got %+v\nwant %+v", gv.Type().Field(i).Name, g, w)
		}
	}
	equal(t, "CallbackURL()", cfg.CallbackURL(), "https://app.example.com/_gatehouse/callback")
	equal(t, "Secure()", cfg.Secure(), true)
	equal(t, "DefaultScopes()", DefaultScopes(), []string{"openid", "email", "profile"})
}

// TestParse_DoesNotShareDefaults checks that configurations do not share
// the default scopes slice, so changing one cannot change another.
func TestParse_DoesNotShareDefaults(t *testing.T) {
	a, err := Parse([]byte(validYAML), testEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse([]byte(validYAML), testEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	a.OIDC.Scopes[0] = "changed"
	*a.OIDC.LogoutAtIdP = false
	equal(t, "second config's Scopes", b.OIDC.Scopes, []string{"openid", "email", "profile"})
	equal(t, "second config's LogoutAtIdP", *b.OIDC.LogoutAtIdP, true)
	equal(t, "DefaultScopes()", DefaultScopes(), []string{"openid", "email", "profile"})
}

func TestProblem_String(t *testing.T) {
	for _, tc := range []struct {
		p    Problem
		want string
	}{
		{Problem{Msg: "not valid YAML: x"}, "not valid YAML: x"},
		{Problem{Line: 3, Msg: "m"}, "line 3: m"},
		{Problem{Path: "cookie.secret", Msg: "m"}, "cookie.secret: m"},
		{Problem{Path: "cookie.secret", Line: 9, Msg: "m"}, "cookie.secret (line 9): m"},
	} {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.p, got, tc.want)
		}
	}
}

func TestError_Error(t *testing.T) {
	ps := []Problem{{Path: "listen", Line: 2, Msg: "a"}, {Path: "upstream", Msg: "b"}}
	for _, tc := range []struct {
		err  *Error
		want string
	}{
		{&Error{Problems: ps}, "2 configuration problem(s):\n  listen (line 2): a\n  upstream: b"},
		{&Error{File: "/etc/gatehouse.yaml", Problems: ps}, "/etc/gatehouse.yaml: 2 configuration problem(s):\n  listen (line 2): a\n  upstream: b"},
		{&Error{File: "g.yaml", Problems: ps[:1]}, "g.yaml: 1 configuration problem(s):\n  listen (line 2): a"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

// TestParse_FixedBugs holds cases that once passed silently or leaked a
// secret; each names what went wrong.
func TestParse_FixedBugs(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, bug string
		ok              func(*Config, error) bool
	}{
		{
			name: "second YAML document is refused",
			yaml: validYAML + "---\nupstream: http://evil.example.com\n",
			bug:  "Parse reads the first document only: a second document after --- is ignored without a problem",
			ok:   func(_ *Config, err error) bool { return err != nil },
		},
		{
			name: "external_url with an empty query",
			yaml: edit("external_url: https://app.example.com", "external_url: https://app.example.com/?"),
			bug:  `external_url "https://app.example.com/?" is accepted and CallbackURL() is "https://app.example.com?/_gatehouse/callback"`,
			ok: func(c *Config, err error) bool {
				return err != nil || c.CallbackURL() == "https://app.example.com/_gatehouse/callback"
			},
		},
		{
			name: "external_url with an empty port",
			yaml: edit("external_url: https://app.example.com", `external_url: "https://app.example.com:"`),
			bug:  `external_url "https://app.example.com:" is accepted and CallbackURL() is "https://app.example.com:/_gatehouse/callback" (upstream refuses an empty port)`,
			ok: func(c *Config, err error) bool {
				return err != nil || c.CallbackURL() == "https://app.example.com/_gatehouse/callback"
			},
		},
		{
			name: "unclosed ${ in a secret does not echo the secret",
			yaml: edit("  client_secret: s3cret", `  client_secret: "hunter2${x"`),
			bug:  `the problem for an unclosed ${ quotes the whole value, here the client secret: oidc.client_secret (line 6): unclosed ${ in "hunter2${x"`,
			ok:   func(_ *Config, err error) bool { return err != nil && !strings.Contains(err.Error(), "hunter2") },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(withAllow(tc.yaml)), testEnv(nil))
			if !tc.ok(cfg, err) {
				t.Errorf("regression: %s (err = %v)", tc.bug, err)
			}
		})
	}
}
