package config

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParse_ExternalURL(t *testing.T) {
	const httpWarning = "insecure_allow_http is set: cookies and authorization codes may cross the network unencrypted"
	ext := func(v string) string {
		return edit("external_url: https://app.example.com", "external_url: "+v)
	}
	loopback := func(want string) func(t *testing.T, c *Config) {
		return func(t *testing.T, c *Config) {
			equal(t, "ExternalURL", c.ExternalURL, want)
			equal(t, "CallbackURL()", c.CallbackURL(), want+"/_gatehouse/callback")
			equal(t, "Secure()", c.Secure(), false)
		}
	}
	runParseCases(t, []parseCase{
		{
			name: "not absolute",
			yaml: ext("app.example.com"),
			want: []string{`external_url (line 1): "app.example.com" is not an absolute http(s) URL; e.g. https://app.example.com`},
		},
		{
			name: "not http",
			yaml: ext("ftp://app.example.com"),
			want: []string{`external_url (line 1): "ftp://app.example.com" is not an absolute http(s) URL; e.g. https://app.example.com`},
		},
		{
			name: "no host",
			yaml: ext("https:///app"),
			want: []string{`external_url (line 1): "https:///app" is not an absolute http(s) URL; e.g. https://app.example.com`},
		},
		{
			name: "has a path",
			yaml: ext("https://app.example.com/app"),
			want: []string{`external_url (line 1): must not have a path ("/app"): gatehouse serves its own endpoints at /_gatehouse/ on the host's root`},
		},
		{
			name: "has an escaped slash path",
			yaml: ext("https://app.example.com/%2F"),
			want: []string{`external_url (line 1): must not have a path ("//"): gatehouse serves its own endpoints at /_gatehouse/ on the host's root`},
		},
		{
			name: "has a query",
			yaml: ext("https://app.example.com/?tenant=a"),
			want: []string{`external_url (line 1): must not have a query or fragment ("https://app.example.com/?tenant=a")`},
		},
		{
			name: "has a fragment",
			yaml: ext("https://app.example.com#top"),
			want: []string{`external_url (line 1): must not have a query or fragment ("https://app.example.com#top")`},
		},
		{
			name: "has user info, shown redacted",
			yaml: ext("https://admin:hunter2@app.example.com"),
			want: []string{`external_url (line 1): must not carry a user name or password ("https://admin:xxxxx@app.example.com"); pass credentials another way`},
		},
		{
			name: "http on a public host",
			yaml: ext("http://app.example.com"),
			want: []string{"external_url (line 1): http:// is allowed only for localhost and 127.0.0.1; use https://app.example.com, or set insecure_allow_http: true for a lab"},
		},
		{
			name: "http on a private address",
			yaml: ext("http://10.1.2.3:4180"),
			want: []string{"external_url (line 1): http:// is allowed only for localhost and 127.0.0.1; use https://10.1.2.3:4180, or set insecure_allow_http: true for a lab"},
		},
		{
			name: "http on a name that only starts with localhost",
			yaml: ext("http://localhost.example.com"),
			want: []string{"external_url (line 1): http:// is allowed only for localhost and 127.0.0.1; use https://localhost.example.com, or set insecure_allow_http: true for a lab"},
		},
		{
			name:  "http on 127.0.0.1",
			yaml:  ext("http://127.0.0.1:4180"),
			check: loopback("http://127.0.0.1:4180"),
		},
		{
			name:  "http on another 127/8 address",
			yaml:  ext("http://127.0.0.2:4180"),
			check: loopback("http://127.0.0.2:4180"),
		},
		{
			name:  "http on localhost",
			yaml:  ext("http://localhost:4180"),
			check: loopback("http://localhost:4180"),
		},
		{
			name:  "http on LOCALHOST",
			yaml:  ext("http://LOCALHOST:4180"),
			check: loopback("http://localhost:4180"),
		},
		{
			name:  "http on [::1]",
			yaml:  ext("http://[::1]:4180"),
			check: loopback("http://[::1]:4180"),
		},
		{
			name:     "http on a public host with insecure_allow_http",
			yaml:     ext("http://app.example.com") + "insecure_allow_http: true\n",
			warnings: []string{httpWarning},
			check: func(t *testing.T, c *Config) {
				equal(t, "ExternalURL", c.ExternalURL, "http://app.example.com")
				equal(t, "Secure()", c.Secure(), false)
			},
		},
		{
			name: "trailing slash and upper-case host are normalised",
			yaml: ext("https://App.Example.COM:8443/"),
			check: func(t *testing.T, c *Config) {
				equal(t, "ExternalURL", c.ExternalURL, "https://app.example.com:8443")
				equal(t, "External", c.External.String(), "https://app.example.com:8443")
				equal(t, "CallbackURL()", c.CallbackURL(), "https://app.example.com:8443/_gatehouse/callback")
				equal(t, "PostLogoutRedirectURL", c.OIDC.PostLogoutRedirectURL, "https://app.example.com:8443/_gatehouse/signed-out")
				equal(t, "Secure()", c.Secure(), true)
			},
		},
	})
}

func TestParse_Issuer(t *testing.T) {
	iss := func(v string) string {
		return edit("  issuer: https://sso.example.com/realms/main", "  issuer: "+v)
	}
	keep := func(want string) func(t *testing.T, c *Config) {
		return func(t *testing.T, c *Config) { equal(t, "Issuer", c.OIDC.Issuer, want) }
	}
	runParseCases(t, []parseCase{
		{
			name: "not absolute",
			yaml: iss("sso.example.com/realms/main"),
			want: []string{`oidc.issuer (line 4): "sso.example.com/realms/main" is not an absolute http(s) URL; e.g. https://login.example.com/realms/main`},
		},
		{
			name: "has a query",
			yaml: iss("https://sso.example.com/realms/main?x=1"),
			want: []string{`oidc.issuer (line 4): must not have a query or fragment ("https://sso.example.com/realms/main?x=1")`},
		},
		{
			name: "has user info",
			yaml: iss("https://gatehouse:pw@sso.example.com/realms/main"),
			want: []string{`oidc.issuer (line 4): must not carry a user name or password ("https://gatehouse:xxxxx@sso.example.com/realms/main"); pass credentials another way`},
		},
		{
			name: "http on a public host",
			yaml: iss("http://sso.example.com/realms/main"),
			want: []string{"oidc.issuer (line 4): http:// is allowed only for localhost and 127.0.0.1; use https://sso.example.com, or set insecure_allow_http: true for a lab"},
		},
		{
			name:  "http on 127.0.0.1",
			yaml:  iss("http://127.0.0.1:5556/dex"),
			check: keep("http://127.0.0.1:5556/dex"),
		},
		{
			name:  "http on localhost",
			yaml:  iss("http://localhost:8080/realms/main"),
			check: keep("http://localhost:8080/realms/main"),
		},
		{
			name:  "http on [::1]",
			yaml:  iss("http://[::1]:8080/realms/main"),
			check: keep("http://[::1]:8080/realms/main"),
		},
		{
			name:     "http on a public host with insecure_allow_http",
			yaml:     iss("http://sso.example.com/realms/main") + "insecure_allow_http: true\n",
			warnings: []string{"insecure_allow_http is set: cookies and authorization codes may cross the network unencrypted"},
			check:    keep("http://sso.example.com/realms/main"),
		},
		{
			name:  "kept exactly as written, trailing slash included",
			yaml:  iss("https://accounts.google.com/"),
			check: keep("https://accounts.google.com/"),
		},
	})
}

func TestParse_ClientSecret(t *testing.T) {
	file := func(v string) string {
		return edit("  client_secret: s3cret", "  client_secret_file: "+v)
	}
	fromFile := func(t *testing.T, c *Config) {
		equal(t, "ClientSecret", c.OIDC.ClientSecret, "from-file")
	}
	runParseCases(t, []parseCase{
		{
			name: "inline",
			yaml: validYAML,
			check: func(t *testing.T, c *Config) {
				equal(t, "ClientSecret", c.OIDC.ClientSecret, "s3cret")
				equal(t, "ClientSecretFile", c.OIDC.ClientSecretFile, "")
			},
		},
		{
			name: "both inline and file",
			yaml: edit("  client_secret: s3cret\n", "  client_secret: s3cret\n  client_secret_file: client.secret\n"),
			want: []string{"oidc.client_secret (line 6): give client_secret or client_secret_file, not both"},
		},
		{
			name: "neither",
			yaml: edit("  client_secret: s3cret\n", ""),
			want: []string{reqClientSecret},
		},
		{
			name: "file missing",
			yaml: file("missing.secret"),
			want: []string{"oidc.client_secret_file (line 6): cannot read missing.secret: no such file or directory"},
		},
		{
			name: "file is a directory",
			yaml: file("."),
			want: []string{"oidc.client_secret_file (line 6): cannot read .: not a regular file"},
		},
		{
			name: "file empty",
			yaml: file("empty.secret"),
			want: []string{"oidc.client_secret_file (line 6): empty.secret is empty"},
		},
		{
			name: "file holds only newlines",
			yaml: file("newline.secret"),
			want: []string{"oidc.client_secret_file (line 6): newline.secret is empty"},
		},
		{
			name: "trailing newline trimmed",
			yaml: file("client.secret"),
			check: func(t *testing.T, c *Config) {
				fromFile(t, c)
				equal(t, "ClientSecretFile", c.OIDC.ClientSecretFile, "client.secret")
			},
		},
		{
			name:  "trailing CRLF trimmed",
			yaml:  file("client-crlf.secret"),
			check: fromFile,
		},
		{
			name:  "file name from a variable",
			yaml:  file("${CLIENT_SECRET_FILE}"),
			env:   map[string]string{"CLIENT_SECRET_FILE": "client.secret"},
			check: fromFile,
		},
	})
}

func TestParse_CookieSecret(t *testing.T) {
	secret := func(v string) string {
		return edit("  secret: "+rawSecret, "  secret: "+v)
	}
	keys := func(want ...[]byte) func(t *testing.T, c *Config) {
		return func(t *testing.T, c *Config) { equal(t, "Keys", c.Cookie.Keys, want) }
	}
	const rawSecret2 = "another-32-byte-secret-for-tests"
	runParseCases(t, []parseCase{
		{
			name:  "raw 32 bytes are the key",
			yaml:  validYAML,
			check: keys([]byte(rawSecret)),
		},
		{
			name: "raw secret too short",
			yaml: secret("too-short"),
			want: []string{"cookie.secret (line 8): 9 bytes; need at least 32, e.g. openssl rand -base64 32"},
		},
		{
			name: "raw secret one byte short",
			yaml: secret(rawSecret[:31]),
			want: []string{"cookie.secret (line 8): 31 characters (23 bytes as base64); need at least 32 bytes, e.g. openssl rand -base64 32"},
		},
		{
			// openssl rand -base64 16: too few bytes to be decoded, so the
			// 24 characters count as raw bytes.
			name: "base64 of 16 bytes too short",
			yaml: secret(b64(testKey(1)[:16])),
			want: []string{"cookie.secret (line 8): 24 characters (16 bytes as base64); need at least 32 bytes, e.g. openssl rand -base64 32"},
		},
		{
			name:  "base64 of 32 random bytes is decoded",
			yaml:  secret(b64(testKey(1))),
			check: keys(testKey(1)),
		},
		{
			name:  "unpadded URL-safe base64 is decoded",
			yaml:  secret(base64.RawURLEncoding.EncodeToString(testKey(2))),
			check: keys(testKey(2)),
		},
		{
			name:  "base64 of 64 bytes is decoded",
			yaml:  secret(b64(append(testKey(1), testKey(2)...))),
			check: keys(append(testKey(1), testKey(2)...)),
		},
		{
			name:  "from a variable",
			yaml:  secret("${COOKIE_SECRET}"),
			check: keys(testKey(1)),
		},
		{
			name: "variable set to empty",
			yaml: secret("${EMPTY}"),
			want: []string{"cookie.secret (line 8): required; at least 32 random bytes, e.g. openssl rand -base64 32"},
		},
		{
			name:  "from a file, newline trimmed, base64 decoded",
			yaml:  edit("  secret: "+rawSecret, "  secret_file: cookie.secret"),
			check: keys(testKey(1)),
		},
		{
			name: "file too short",
			yaml: edit("  secret: "+rawSecret, "  secret_file: short.secret"),
			want: []string{"cookie.secret_file (line 8): 5 bytes; need at least 32, e.g. openssl rand -base64 32"},
		},
		{
			name: "file missing",
			yaml: edit("  secret: "+rawSecret, "  secret_file: missing.secret"),
			want: []string{"cookie.secret_file (line 8): cannot read missing.secret: no such file or directory"},
		},
		{
			name: "file empty",
			yaml: edit("  secret: "+rawSecret, "  secret_file: empty.secret"),
			want: []string{"cookie.secret_file (line 8): empty.secret is empty"},
		},
		{
			name: "both secret and secret_file",
			yaml: plus("  secret_file: cookie.secret\n"),
			want: []string{"cookie.secret (line 8): give secret or secret_file, not both"},
		},
		{
			name:  "previous secrets follow the current one in order",
			yaml:  secret(b64(testKey(1)) + "\n  previous_secrets:\n    - " + b64(testKey(2)) + "\n    - " + rawSecret2 + "\n    - ${PREVIOUS}"),
			env:   map[string]string{"PREVIOUS": b64(testKey(3))},
			check: keys(testKey(1), testKey(2), []byte(rawSecret2), testKey(3)),
		},
		{
			name:  "previous secrets after a secret file",
			yaml:  edit("  secret: "+rawSecret, "  secret_file: cookie.secret\n  previous_secrets: ["+rawSecret2+"]"),
			check: keys(testKey(1), []byte(rawSecret2)),
		},
		{
			name: "each previous secret is checked",
			yaml: plus("  previous_secrets:\n    - " + b64(testKey(2)) + "\n    - old\n    - " + b64(testKey(3)[:20]) + "\n"),
			want: []string{
				"cookie.previous_secrets[1] (line 11): 3 bytes; need at least 32, e.g. openssl rand -base64 32",
				"cookie.previous_secrets[2] (line 12): 28 characters (20 bytes as base64); need at least 32 bytes, e.g. openssl rand -base64 32",
			},
		},
		{
			// An empty previous secret is skipped, so that
			// previous_secrets: [${OLD_SECRET}] works with OLD_SECRET="".
			name:  "empty previous secret is skipped",
			yaml:  plus("  previous_secrets: [\"${EMPTY}\", \"\"]\n"),
			check: keys([]byte(rawSecret)),
		},
		{
			name: "previous secret not a list",
			yaml: plus("  previous_secrets: " + rawSecret2 + "\n"),
			want: []string{`cookie.previous_secrets (line 9): expected a list, e.g. [a, b] or one "- item" per line`},
		},
		{
			name: "previous secrets are not checked without a current secret",
			yaml: edit("  secret: "+rawSecret, "  previous_secrets: [old]"),
			want: []string{reqCookieSecret},
		},
	})
}

func TestParse_CookieName(t *testing.T) {
	name := func(v string) string { return plus("  name: " + v + "\n") }
	runParseCases(t, []parseCase{
		{
			name: "__Host- prefix refused",
			yaml: name("__Host-gatehouse"),
			want: []string{`cookie.name (line 9): "__Host-gatehouse": leave out the prefix; gatehouse adds __Host- itself when external_url is https`},
		},
		{
			name: "__host- prefix in any case refused",
			yaml: name("__HOST-sid"),
			want: []string{`cookie.name (line 9): "__HOST-sid": leave out the prefix; gatehouse adds __Host- itself when external_url is https`},
		},
		{
			name: "__Secure- prefix refused",
			yaml: name("__Secure-sid"),
			want: []string{`cookie.name (line 9): "__Secure-sid": leave out the prefix; gatehouse adds __Host- itself when external_url is https`},
		},
		{
			name: "space",
			yaml: name(`"my session"`),
			want: []string{`cookie.name (line 9): "my session" is not a cookie name; use letters, digits, - and _`},
		},
		{
			name: "equals sign",
			yaml: name(`"sid=1"`),
			want: []string{`cookie.name (line 9): "sid=1" is not a cookie name; use letters, digits, - and _`},
		},
		{
			name: "semicolon",
			yaml: name(`"sid;x"`),
			want: []string{`cookie.name (line 9): "sid;x" is not a cookie name; use letters, digits, - and _`},
		},
		{
			name: "non-ASCII",
			yaml: name("sésame"),
			want: []string{`cookie.name (line 9): "sésame" is not a cookie name; use letters, digits, - and _`},
		},
		{
			name:  "custom name",
			yaml:  name("gh_session-2"),
			check: func(t *testing.T, c *Config) { equal(t, "Name", c.Cookie.Name, "gh_session-2") },
		},
	})
}

func TestParse_Scopes(t *testing.T) {
	scopes := func(v string) string {
		return edit("  client_id: gatehouse\n", "  client_id: gatehouse\n  scopes: "+v+"\n")
	}
	runParseCases(t, []parseCase{
		{
			name: "without openid",
			yaml: scopes("[email, profile]"),
			want: []string{"oidc.scopes (line 6): must include openid (got [email profile])"},
		},
		{
			name: "empty list",
			yaml: scopes("[]"),
			want: []string{"oidc.scopes (line 6): must include openid (got [])"},
		},
		{
			name: "openid in another case",
			yaml: scopes("[OpenID]"),
			want: []string{"oidc.scopes (line 6): must include openid (got [OpenID])"},
		},
		{
			name: "scope with a space",
			yaml: scopes(`[openid, "email profile"]`),
			want: []string{`oidc.scopes[1] (line 6): "email profile" is not a scope; one scope per list item, no spaces`},
		},
		{
			name: "all scopes in one string",
			yaml: scopes(`"openid email profile"`),
			want: []string{`oidc.scopes (line 6): expected a list, e.g. [a, b] or one "- item" per line`},
		},
		{
			name: "empty scope and a quote, one line per item",
			yaml: scopes("\n    - openid\n    - \"\"\n    - 'a\"b'"),
			want: []string{
				`oidc.scopes[1] (line 8): "" is not a scope; one scope per list item, no spaces`,
				`oidc.scopes[2] (line 9): "a\"b" is not a scope; one scope per list item, no spaces`,
			},
		},
		{
			name: "openid missing and a bad scope",
			yaml: scopes("[\"email\\tprofile\"]"),
			want: []string{
				"oidc.scopes (line 6): must include openid (got [email\tprofile])",
				`oidc.scopes[0] (line 6): "email\tprofile" is not a scope; one scope per list item, no spaces`,
			},
		},
		{
			name: "extra scopes",
			yaml: scopes("[openid, email, profile, groups, offline_access]"),
			check: func(t *testing.T, c *Config) {
				equal(t, "Scopes", c.OIDC.Scopes, []string{"openid", "email", "profile", "groups", "offline_access"})
			},
		},
		{
			name: "openid alone",
			yaml: scopes("[openid]"),
			check: func(t *testing.T, c *Config) {
				equal(t, "Scopes", c.OIDC.Scopes, []string{"openid"})
			},
		},
	})
}

func TestParse_Session(t *testing.T) {
	session := func(body string) string { return plus("session:\n" + body) }
	runParseCases(t, []parseCase{
		{
			name: "idle longer than absolute",
			yaml: session("  idle_timeout: 9h\n"),
			want: []string{"session.idle_timeout (line 10): must not be longer than session.absolute_timeout (got 9h0m0s > 8h0m0s)"},
		},
		{
			name: "idle longer than a shorter absolute",
			yaml: session("  idle_timeout: 45m\n  absolute_timeout: 30m\n"),
			want: []string{"session.idle_timeout (line 10): must not be longer than session.absolute_timeout (got 45m0s > 30m0s)"},
		},
		{
			name: "idle equal to absolute",
			yaml: session("  idle_timeout: 1h\n  absolute_timeout: 1h\n"),
			check: func(t *testing.T, c *Config) {
				equal(t, "IdleTimeout", c.Session.IdleTimeout, time.Hour)
				equal(t, "AbsoluteTimeout", c.Session.AbsoluteTimeout, time.Hour)
			},
		},
		{
			name: "absolute longer than 400 days",
			yaml: session("  absolute_timeout: 9601h\n"),
			want: []string{"session.absolute_timeout (line 10): at most 400 days (browsers cap cookie lifetimes there); got 9601h0m0s"},
		},
		{
			name: "absolute exactly 400 days",
			yaml: session("  absolute_timeout: 9600h\n"),
			check: func(t *testing.T, c *Config) {
				equal(t, "AbsoluteTimeout", c.Session.AbsoluteTimeout, 400*24*time.Hour)
			},
		},
		{
			name: "negative idle",
			yaml: session("  idle_timeout: -5m\n"),
			want: []string{"session.idle_timeout (line 10): must be positive"},
		},
		{
			name: "negative absolute",
			yaml: session("  absolute_timeout: -1h\n"),
			want: []string{
				"session.absolute_timeout (line 10): must be positive",
				"session.idle_timeout: must not be longer than session.absolute_timeout (got 30m0s > -1h0m0s)",
			},
		},
		{
			// Zero is the same as leaving the key out.
			name: "zero durations are refused, not replaced by the default",
			yaml: session("  idle_timeout: 0s\n  absolute_timeout: 0\n"),
			want: []string{
				"session.idle_timeout (line 10): must be positive",
				"session.absolute_timeout (line 11): must be positive",
			},
		},
		{
			name: "max_sessions 0 is refused",
			yaml: session("  max_sessions: 0\n"),
			want: []string{"session.max_sessions (line 10): must be at least 1 (got 0)"},
		},
		{
			name: "max_sessions negative",
			yaml: session("  max_sessions: -1\n"),
			want: []string{"session.max_sessions (line 10): must be at least 1 (got -1)"},
		},
		{
			name: "max_sessions 1",
			yaml: session("  max_sessions: 1\n"),
			check: func(t *testing.T, c *Config) {
				equal(t, "MaxSessions", c.Session.MaxSessions, 1)
			},
		},
	})
}

func TestParse_Headers(t *testing.T) {
	headers := func(body string) string { return plus("headers:\n" + body) }
	var cases []parseCase
	for _, name := range []string{
		"Authorization", "Connection", "Content-Length", "Content-Type", "Cookie", "Host",
		"Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "TE",
		"Trailer", "Transfer-Encoding", "Upgrade", "X-Forwarded-For", "X-Forwarded-Host",
		"X-Forwarded-Proto", "Forwarded",
		// look-alikes
		"cookie", "HOST", "x_forwarded_for", "Proxy_Authorization",
	} {
		cases = append(cases, parseCase{
			name: "reserved " + name,
			yaml: headers("  user: " + name + "\n"),
			want: []string{fmt.Sprintf("headers.user (line 10): %q is reserved by HTTP; choose another name such as X-Forwarded-User", name)},
		})
	}
	cases = append(cases, []parseCase{
		{
			name: "reserved names in every field",
			yaml: headers("  user: Cookie\n  email: Host\n  groups: Authorization\n  name: X_Forwarded_For\n"),
			want: []string{
				`headers.user (line 10): "Cookie" is reserved by HTTP; choose another name such as X-Forwarded-User`,
				`headers.email (line 11): "Host" is reserved by HTTP; choose another name such as X-Forwarded-User`,
				`headers.groups (line 12): "Authorization" is reserved by HTTP; choose another name such as X-Forwarded-User`,
				`headers.name (line 13): "X_Forwarded_For" is reserved by HTTP; choose another name such as X-Forwarded-User`,
			},
		},
		{
			name: "space in a name",
			yaml: headers("  user: X User\n"),
			want: []string{`headers.user (line 10): "X User" is not a header name; use letters, digits and -`},
		},
		{
			name: "colon in a name",
			yaml: headers("  email: \"X-Email:\"\n"),
			want: []string{`headers.email (line 10): "X-Email:" is not a header name; use letters, digits and -`},
		},
		{
			name: "non-ASCII name",
			yaml: headers("  name: X-Nöm\n"),
			want: []string{`headers.name (line 10): "X-Nöm" is not a header name; use letters, digits and -`},
		},
		{
			name: "same name after folding case and _",
			yaml: headers("  user: X-User\n  email: x_user\n"),
			want: []string{`headers.email (line 11): "x_user" is already used by headers.user; each identity header needs its own name`},
		},
		{
			name: "same name as another field's default",
			yaml: headers("  groups: x-forwarded-email\n"),
			want: []string{`headers.groups (line 10): "x-forwarded-email" is already used by headers.email; each identity header needs its own name`},
		},
		{
			name: "custom names",
			yaml: headers("  user: X-Auth-Request-User\n  email: X-Auth-Request-Email\n  groups: X-Auth-Request-Groups\n  name: X-Auth-Request-Preferred-Username\n"),
			check: func(t *testing.T, c *Config) {
				equal(t, "Headers", c.Headers, Headers{
					User:   "X-Auth-Request-User",
					Email:  "X-Auth-Request-Email",
					Groups: "X-Auth-Request-Groups",
					Name:   "X-Auth-Request-Preferred-Username",
				})
			},
		},
	}...)
	runParseCases(t, cases)
}

func TestParse_Allow(t *testing.T) {
	allow := func(body string) string { return plus("allow:\n" + body) }
	const notEmail = "is not an email address; write one address with a single @"
	const notDomain = "is not a domain; write example.com, or *.example.com for its subdomains"
	runParseCases(t, []parseCase{
		{
			name: "emails with two @, none, and empty parts",
			yaml: allow("  emails:\n    - alice@@example.com\n    - bob@example@com\n    - carol\n    - \"@example.com\"\n    - dave@\n"),
			want: []string{
				`allow.emails[0] (line 11): "alice@@example.com" ` + notEmail,
				`allow.emails[1] (line 12): "bob@example@com" ` + notEmail,
				`allow.emails[2] (line 13): "carol" ` + notEmail,
				`allow.emails[3] (line 14): "@example.com" ` + notEmail,
				`allow.emails[4] (line 15): "dave@" ` + notEmail,
			},
		},
		{
			name: "email domains with @ or a bad host",
			yaml: allow("  email_domains:\n    - \"@example.com\"\n    - alice@example.com\n    - exa mple.com\n    - example..com\n    - example.com.\n    - https://example.com\n    - \"*\"\n    - \"*.*.example.com\"\n    - ex_ample.com\n"),
			want: []string{
				`allow.email_domains[0] (line 11): "@example.com" ` + notDomain,
				`allow.email_domains[1] (line 12): "alice@example.com" ` + notDomain,
				`allow.email_domains[2] (line 13): "exa mple.com" ` + notDomain,
				`allow.email_domains[3] (line 14): "example..com" ` + notDomain,
				`allow.email_domains[4] (line 15): "example.com." ` + notDomain,
				`allow.email_domains[5] (line 16): "https://example.com" ` + notDomain,
				`allow.email_domains[6] (line 17): "*" ` + notDomain,
				`allow.email_domains[7] (line 18): "*.*.example.com" ` + notDomain,
				`allow.email_domains[8] (line 19): "ex_ample.com" ` + notDomain,
			},
		},
		{
			name: "label longer than 63 bytes",
			yaml: allow("  email_domains: [" + strings.Repeat("a", 64) + ".com]\n"),
			want: []string{`allow.email_domains[0] (line 10): "` + strings.Repeat("a", 64) + `.com" ` + notDomain},
		},
		{
			name: "empty group",
			yaml: allow("  groups: [admins, \"\"]\n"),
			want: []string{"allow.groups[1] (line 10): empty group name"},
		},
		{
			name: "valid rules, *.example.com and upper case accepted",
			yaml: allow("  emails: [Alice@Example.com]\n  email_domains: [\"*.example.com\", Example.ORG, xn--bcher-kva.example]\n  groups: [\"/admins\", \"cn=ops,ou=groups\"]\n"),
			check: func(t *testing.T, c *Config) {
				equal(t, "Allow", c.Allow, Allow{
					Emails:       []string{"Alice@Example.com"},
					EmailDomains: []string{"*.example.com", "Example.ORG", "xn--bcher-kva.example"},
					Groups:       []string{"/admins", "cn=ops,ou=groups"},
				})
			},
		},
	})
}

func TestParse_Server(t *testing.T) {
	server := func(body string) string { return plus("server:\n" + body) }
	const outOfRange = "server.max_header_bytes (line 10): must be between 4096 and 1048576 (got %d)"
	maxHeaderBytes := func(want int) func(t *testing.T, c *Config) {
		return func(t *testing.T, c *Config) { equal(t, "MaxHeaderBytes", c.Server.MaxHeaderBytes, want) }
	}
	runParseCases(t, []parseCase{
		{
			name: "max_header_bytes below 4 KiB",
			yaml: server("  max_header_bytes: 4095\n"),
			want: []string{fmt.Sprintf(outOfRange, 4095)},
		},
		{
			name: "max_header_bytes above 1 MiB",
			yaml: server("  max_header_bytes: 1048577\n"),
			want: []string{fmt.Sprintf(outOfRange, 1048577)},
		},
		{
			name: "max_header_bytes negative",
			yaml: server("  max_header_bytes: -1\n"),
			want: []string{fmt.Sprintf(outOfRange, -1)},
		},
		{
			name: "max_header_bytes 0 is refused",
			yaml: server("  max_header_bytes: 0\n"),
			want: []string{"server.max_header_bytes (line 10): must be between 4096 and 1048576 (got 0)"},
		},
		{
			name:  "max_header_bytes at the lower bound",
			yaml:  server("  max_header_bytes: 4096\n"),
			check: maxHeaderBytes(4096),
		},
		{
			name:  "max_header_bytes at the upper bound",
			yaml:  server("  max_header_bytes: 1048576\n"),
			check: maxHeaderBytes(1048576),
		},
		{
			name: "negative body limits",
			yaml: server("  read_body_timeout: -1s\n  min_body_rate: -5\n"),
			want: []string{
				"server.read_body_timeout (line 10): must be 0 (no limit) or positive (got -1s)",
				"server.min_body_rate (line 11): must be 0 (a fixed limit) or a positive number of bytes per second (got -5)",
			},
		},
		{
			name: "body limits off",
			yaml: server("  read_body_timeout: 0s\n  min_body_rate: 0\n"),
			check: func(t *testing.T, c *Config) {
				equal(t, "body limits", [2]any{c.Server.ReadBodyTimeout, c.Server.MinBodyRate}, [2]any{time.Duration(0), 0})
			},
		},
		{
			name: "negative timeouts",
			yaml: server("  read_header_timeout: -1s\n  idle_timeout: -2m\n  shutdown_timeout: -1ns\n"),
			want: []string{
				"server.read_header_timeout (line 10): must be positive",
				"server.idle_timeout (line 11): must be positive",
				"server.shutdown_timeout (line 12): must be positive",
			},
		},
		{
			name: "zero timeouts are refused",
			yaml: server("  read_header_timeout: 0s\n  idle_timeout: 0s\n  shutdown_timeout: 0s\n"),
			want: []string{
				"server.read_header_timeout (line 10): must be positive",
				"server.idle_timeout (line 11): must be positive",
				"server.shutdown_timeout (line 12): must be positive",
			},
		},
	})
}

func TestParse_Other(t *testing.T) {
	runParseCases(t, []parseCase{
		{
			name: "listen without a port",
			yaml: plus("listen: 4180\n"),
			want: []string{`listen (line 9): "4180" is not host:port; write e.g. 127.0.0.1:4180 or :4180`},
		},
		{
			name:  "listen on every interface",
			yaml:  plus("listen: \":4180\"\n"),
			check: func(t *testing.T, c *Config) { equal(t, "Listen", c.Listen, ":4180") },
		},
		{
			name: "upstream without a scheme",
			yaml: edit("upstream: http://127.0.0.1:8080", "upstream: 127.0.0.1:8080"),
			want: []string{`upstream (line 2): "127.0.0.1:8080" is not an absolute http(s) URL; e.g. http://127.0.0.1:8080`},
		},
		{
			name: "upstream with an empty port",
			yaml: edit("upstream: http://127.0.0.1:8080", `upstream: "http://127.0.0.1:"`),
			want: []string{`upstream (line 2): empty port in "http://127.0.0.1:"; drop the colon or give a port`},
		},
		{
			name: "upstream with user info",
			yaml: edit("upstream: http://127.0.0.1:8080", "upstream: http://app:pw@127.0.0.1:8080"),
			want: []string{`upstream (line 2): must not carry a user name or password ("http://app:xxxxx@127.0.0.1:8080"); pass credentials another way`},
		},
		{
			name: "upstream over http on another host is allowed",
			yaml: edit("upstream: http://127.0.0.1:8080", "upstream: http://app.internal:8080/base"),
			check: func(t *testing.T, c *Config) {
				equal(t, "UpstreamURL", c.UpstreamURL.String(), "http://app.internal:8080/base")
			},
		},
		{
			name: "negative upstream_timeout and oidc.timeout",
			yaml: edit("  client_id: gatehouse\n", "  client_id: gatehouse\n  timeout: -1s\n") + "upstream_timeout: -5s\n",
			want: []string{
				"upstream_timeout (line 10): must be positive",
				"oidc.timeout (line 6): must be positive",
			},
		},
		{
			name: "relative post_logout_redirect_url",
			yaml: edit("  client_id: gatehouse\n", "  client_id: gatehouse\n  post_logout_redirect_url: /signed-out\n"),
			want: []string{`oidc.post_logout_redirect_url (line 6): "/signed-out" is not an absolute http(s) URL; e.g. https://app.example.com/_gatehouse/signed-out`},
		},
		{
			name: "custom post_logout_redirect_url",
			yaml: edit("  client_id: gatehouse\n", "  client_id: gatehouse\n  post_logout_redirect_url: https://www.example.com/bye\n"),
			check: func(t *testing.T, c *Config) {
				equal(t, "PostLogoutRedirectURL", c.OIDC.PostLogoutRedirectURL, "https://www.example.com/bye")
			},
		},
		{
			name: "claims",
			yaml: edit("  client_id: gatehouse\n", "  client_id: gatehouse\n  groups_claim: roles\n  user_claim: email\n"),
			check: func(t *testing.T, c *Config) {
				equal(t, "GroupsClaim", c.OIDC.GroupsClaim, "roles")
				equal(t, "UserClaim", c.OIDC.UserClaim, "email")
			},
		},
		{
			name: "insecure_allow_unverified_email warns",
			yaml: edit("  client_id: gatehouse\n", "  client_id: gatehouse\n  insecure_allow_unverified_email: true\n"),
			warnings: []string{
				"oidc.insecure_allow_unverified_email is set: emails the identity provider has not verified pass email allow lists",
			},
		},
		{
			name: "both insecure switches warn, in order",
			yaml: edit("  client_id: gatehouse\n", "  client_id: gatehouse\n  insecure_allow_unverified_email: true\n") + "insecure_allow_http: true\n",
			warnings: []string{
				"insecure_allow_http is set: cookies and authorization codes may cross the network unencrypted",
				"oidc.insecure_allow_unverified_email is set: emails the identity provider has not verified pass email allow lists",
			},
		},
		{
			name: "insecure switches off do not warn",
			yaml: edit("  client_id: gatehouse\n", "  client_id: gatehouse\n  insecure_allow_unverified_email: false\n") + "insecure_allow_http: false\n",
		},
	})
}

func TestDecodeSecret(t *testing.T) {
	key := testKey(7)
	for _, tc := range []struct {
		name, in string
		want     []byte
	}{
		{"std padded", base64.StdEncoding.EncodeToString(key), key},
		{"std unpadded", base64.RawStdEncoding.EncodeToString(key), key},
		{"url padded", base64.URLEncoding.EncodeToString(key), key},
		{"url unpadded", base64.RawURLEncoding.EncodeToString(key), key},
		{"short base64 is raw", "c2hvcnQ=", []byte("c2hvcnQ=")},
		{"not base64 is raw", rawSecret, []byte(rawSecret)},
		{"empty", "", []byte{}},
		// openssl rand -hex 32 is also valid base64: 64 characters decode
		// to 48 bytes, which are used.
		{"hex is read as base64", strings.Repeat("ab", 32), mustDecode(strings.Repeat("ab", 32))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := DecodeSecret(tc.in); !slices.Equal(got, tc.want) {
				t.Errorf("DecodeSecret(%q) = %x, want %x", tc.in, got, tc.want)
			}
		})
	}
}

func mustDecode(s string) []byte {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestIsLoopback(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "LocalHost": true, "127.0.0.1": true, "127.8.9.10": true, "::1": true,
		"[::1]": false, "localhost.": false, "localhost.example.com": false, "10.0.0.1": false,
		"0.0.0.0": false, "::": false, "": false, "example.com": false,
	} {
		if got := IsLoopback(host); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestNormalizeHeader(t *testing.T) {
	for in, want := range map[string]string{
		"X-Forwarded-User":    "x-forwarded-user",
		"x_forwarded_user":    "x-forwarded-user",
		"X-Auth_Request_User": "x-auth-request-user",
		"":                    "",
	} {
		if got := NormalizeHeader(in); got != want {
			t.Errorf("NormalizeHeader(%q) = %q, want %q", in, got, want)
		}
	}
}

// routesOnly is validYAML without the top-level upstream.
var routesOnly = strings.Replace(baseYAML, "upstream: http://127.0.0.1:8080\n", "", 1)

func TestParse_Routes(t *testing.T) {
	runParseCases(t, []parseCase{
		{
			name: "max_auth_age on a route",
			yaml: routesOnly + "routes:\n  - match: {path_prefix: /admin}\n    upstream: http://127.0.0.1:9000\n    max_auth_age: 15m\n",
			check: func(t *testing.T, c *Config) {
				equal(t, "MaxAuthAge", c.Routes[0].MaxAuthAge, 15*time.Minute)
			},
		},
		{
			name: "max_auth_age must be positive",
			yaml: routesOnly + "routes:\n  - match: {path_prefix: /a}\n    upstream: http://127.0.0.1:9000\n    max_auth_age: -1m\n" +
				"  - match: {path_prefix: /b}\n    upstream: http://127.0.0.1:9000\n    max_auth_age: 0s\n" +
				"  - match: {path_prefix: /c}\n    upstream: http://127.0.0.1:9000\n    max_auth_age: 500ms\n",
			want: []string{
				"routes[0].max_auth_age (line 11): must be positive",
				"routes[1].max_auth_age (line 14): must be positive",
				"routes[2].max_auth_age (line 17): must be at least 1s (got 500ms)",
			},
		},
		{
			name: "routes replace the top-level upstream",
			yaml: routesOnly + "routes:\n  - match: {host: Wiki.Example.com, path_prefix: /app/}\n    upstream: http://127.0.0.1:9000\n    public: [/app/static/]\n",
			check: func(t *testing.T, c *Config) {
				equal(t, "len(Routes)", len(c.Routes), 1)
				r := c.Routes[0]
				equal(t, "Host", r.Match.Host, "wiki.example.com")
				equal(t, "PathPrefix", r.Match.PathPrefix, "/app")
				equal(t, "Public", r.Public, []string{"/app/static"})
				equal(t, "Name", r.Name, "wiki.example.com/app")
				equal(t, "inherited Allow", *r.Allow, Allow{EmailDomains: []string{"example.com"}})
			},
		},
		{
			name: "top-level upstream and allow become the last, catch-all route",
			yaml: plus("allow:\n  groups: [staff]\nroutes:\n  - match: {path_prefix: /docs}\n    upstream: http://127.0.0.1:9000\n    allow: {any_user: true}\n"),
			check: func(t *testing.T, c *Config) {
				equal(t, "len(Routes)", len(c.Routes), 2)
				equal(t, "route allow", *c.Routes[0].Allow, Allow{AnyUser: true})
				equal(t, "catch-all", c.Routes[1].Match, RouteMatch{PathPrefix: "/"})
				equal(t, "catch-all allow", c.Routes[1].Allow.Groups, []string{"staff"})
			},
		},
		{
			name: "a route without allow inherits the top-level allow",
			yaml: routesOnly + "allow:\n  emails: [a@example.com]\nroutes:\n  - upstream: http://127.0.0.1:9000\n",
			check: func(t *testing.T, c *Config) {
				equal(t, "Allow.Emails", c.Routes[0].Allow.Emails, []string{"a@example.com"})
			},
		},
		{
			name: "forward-auth only: no upstream anywhere",
			yaml: routesOnly + "forward_auth:\n  mode: traefik\n",
			check: func(t *testing.T, c *Config) {
				equal(t, "len(Routes)", len(c.Routes), 0)
				equal(t, "Mode", c.ForwardAuth.Mode, "traefik")
			},
		},
		{
			name: "no upstream, routes or forward_auth",
			yaml: routesOnly,
			want: []string{"upstream: required; e.g. http://127.0.0.1:8080"},
		},
		{
			name: "every route problem",
			yaml: routesOnly + `routes:
  - match: {host: "wiki.example.com:443", path_prefix: app}
    upstream: ftp://x
  - match: {host: "*.bad_host", path_prefix: /a/../b}
    public: [/elsewhere, /a%2f]
    extra_headers: {X-Forwarded-User: x, Cookie: y, "bad name": z, X-Ok: "a\nb"}
    allow: {claims: {roles: [], .x: [a]}}
  - match: {path_prefix: /docs}
    public: [/api]
  - match: {path_prefix: /same}
  - match: {path_prefix: /SAME/}
`,
			want: []string{
				`routes[0].match.host (line 9): "wiki.example.com:443" is not a host; write wiki.example.com or *.example.com, without a port`,
				`routes[0].match.path_prefix (line 9): "app" must start with /`,
				`routes[0].upstream (line 10): "ftp://x" is not an absolute http(s) URL; e.g. http://127.0.0.1:8080`,
				`routes[1].match.host (line 11): "*.bad_host" is not a host; write wiki.example.com or *.example.com, without a port`,
				`routes[1].match.path_prefix (line 11): "/a/../b" has dot segments or repeated slashes; write /b`,
				`routes[1].public[1] (line 12): "/a%2f": write the plain path, without ?, #, %-escapes, backslashes or spaces`,
				`routes[1].allow.claims..x (line 14): ".x" is not a claim name; write a name, or a dotted path such as realm_access.roles`,
				`routes[1].allow.claims.roles (line 14): no values; list the values that allow, e.g. [admin]`,
				`routes[1].extra_headers.Cookie (line 13): "Cookie" is set by gatehouse or by HTTP itself; choose another name`,
				`routes[1].extra_headers.X-Forwarded-User (line 13): "X-Forwarded-User" is set by gatehouse or by HTTP itself; choose another name`,
				`routes[1].extra_headers.X-Ok (line 13): the value holds a control character`,
				`routes[1].extra_headers.bad name (line 13): "bad name" is not a header name`,
				`routes[2].public[0] (line 16): /api is outside the route's path_prefix /docs, so it can never match`,
				`routes[4].match (line 18): same host and path_prefix as routes[3]; merge them`,
			},
		},
		{
			name: "prefixes some servers read otherwise",
			yaml: routesOnly + `routes:
  - match: {path_prefix: "/app;jsessionid=1"}
    upstream: http://127.0.0.1:9000
  - match: {path_prefix: /v1./x}
    upstream: http://127.0.0.1:9000
    public: [/v1./x/y, "/v1./x;y"]
  - match: {path_prefix: "/files:list"}
    upstream: http://127.0.0.1:9000
`,
			want: []string{
				`routes[0].match.path_prefix (line 9): "/app;jsessionid=1": a ';' starts a path parameter, which Tomcat, Jetty and Spring cut off; write the path without it`,
				`routes[1].match.path_prefix (line 11): "/v1./x": the segment "v1." ends in a dot or holds a ':', which IIS and NTFS drop; write the path without it`,
				`routes[1].public[0] (line 13): "/v1./x/y": the segment "v1." ends in a dot or holds a ':', which IIS and NTFS drop; write the path without it`,
				`routes[1].public[1] (line 13): "/v1./x;y": a ';' starts a path parameter, which Tomcat, Jetty and Spring cut off; write the path without it`,
				`routes[2].match.path_prefix (line 14): "/files:list": the segment "files:list" ends in a dot or holds a ':', which IIS and NTFS drop; write the path without it`,
			},
		},
		{
			name: "a second catch-all",
			yaml: plus("routes:\n  - upstream: http://127.0.0.1:9000\n"),
			want: []string{"upstream (line 2): routes[0] already catches every request (no host, path_prefix /); drop upstream or that route"},
		},
		{
			name: "forward_auth.mode",
			yaml: plus("forward_auth:\n  mode: haproxy\n"),
			want: []string{`forward_auth.mode (line 10): "haproxy" is not a mode; use nginx (401 + X-Gatehouse-Login), traefik or envoy (302 to the login)`},
		},
		{
			name: "trusted_proxies",
			yaml: plus("trusted_proxies: [10.0.0.0/8, 192.0.2.7, fd00::/8, nope, 0.0.0.0/0]\n"),
			want: []string{`trusted_proxies[3] (line 9): "nope" is not an IP address or CIDR; write e.g. 10.0.0.0/8 or 192.0.2.7`},
		},
		{
			name:     "trusted_proxies parsed, 0.0.0.0/0 warned",
			yaml:     plus("trusted_proxies: [10.0.0.0/8, 192.0.2.7, 0.0.0.0/0]\n"),
			warnings: []string{"trusted_proxies has 0.0.0.0/0: every client may then state the original request of a forward-auth call"},
			check: func(t *testing.T, c *Config) {
				equal(t, "TrustedNets", fmt.Sprint(c.TrustedNets), "[10.0.0.0/8 192.0.2.7/32 0.0.0.0/0]")
			},
		},
		{
			name: "explicitly empty trusted_proxies trusts nobody",
			yaml: plus("trusted_proxies: []\n"),
			check: func(t *testing.T, c *Config) {
				equal(t, "len(TrustedNets)", len(c.TrustedNets), 0)
			},
		},
		{
			name: "redirect_allow_hosts",
			yaml: plus("redirect_allow_hosts: [wiki.example.com, \"wiki.example.com:8443\", .example.com, \"x:99999\", \"bad host\"]\n"),
			want: []string{
				`redirect_allow_hosts[3] (line 9): "x:99999" has a bad port`,
				`redirect_allow_hosts[4] (line 9): "bad host" is not a host; write app.example.com, app.example.com:8443, or .example.com for every subdomain`,
			},
		},
		{
			name: "cookie.domain must cover the external host",
			yaml: edit("  secret: this-is-a-32-byte-cookie-secret!", "  secret: this-is-a-32-byte-cookie-secret!\n  domain: example.org"),
			want: []string{"cookie.domain (line 9): external_url's host app.example.com is not under example.org, so browsers would refuse the cookie"},
		},
		{
			name: "cookie.domain not a domain",
			yaml: edit("  secret: this-is-a-32-byte-cookie-secret!", "  secret: this-is-a-32-byte-cookie-secret!\n  domain: com"),
			want: []string{`cookie.domain (line 9): "com" is not a domain to share the cookie under; write e.g. example.com`},
		},
		{
			name: "cookie.domain with a leading dot",
			yaml: edit("  secret: this-is-a-32-byte-cookie-secret!", "  secret: this-is-a-32-byte-cookie-secret!\n  domain: .Example.com"),
			check: func(t *testing.T, c *Config) {
				equal(t, "Domain", c.Cookie.Domain, "example.com")
			},
		},
		{
			name: "claim names collected for sessions",
			yaml: plus("allow:\n  claims: {realm_access.roles: [a]}\nroutes:\n  - match: {path_prefix: /x}\n    upstream: http://127.0.0.1:9000\n    allow: {claims: {dept: [it]}}\n"),
			check: func(t *testing.T, c *Config) {
				equal(t, "ClaimNames", c.ClaimNames(), []string{"dept", "realm_access.roles"})
			},
		},
	})
}

// TestParse_PolicyRequired pins issue 12: a configuration in which a
// request could meet no policy, or an empty one, is refused; an empty
// policy is never "anyone".
func TestParse_PolicyRequired(t *testing.T) {
	const fix = "list who may pass (emails, email_domains, groups or claims), or write allow: {any_user: true} to let every user the identity provider signs in pass"
	route := func(extra string) string {
		return routesOnly + "routes:\n  - name: wiki\n    upstream: http://127.0.0.1:9000\n" + extra
	}
	runParseCases(t, []parseCase{
		{
			name:    "no allow with a top-level upstream",
			yaml:    baseYAML,
			noAllow: true,
			want:    []string{"allow: required: upstream (line 2) sends every request that no route matches through the top-level policy, and there is none; add a top-level allow: " + fix},
		},
		{
			name:    "allow alone (null)",
			yaml:    plus("allow:\n"),
			noAllow: true,
			want:    []string{"allow (line 9): has no value, and an empty policy would let nobody in; " + fix},
		},
		{
			name: "allow: {}",
			yaml: plus("allow: {}\n"),
			want: []string{"allow (line 9): has no rule, and an empty policy would let nobody in; " + fix},
		},
		{
			name: "empty lists given explicitly",
			yaml: plus("allow:\n  groups: []\n  emails: []\n  email_domains: []\n  claims: {}\n"),
			want: []string{
				`allow.emails (line 11): an empty list allows nobody and is not "anyone"; list at least one value, or remove the key`,
				`allow.email_domains (line 12): an empty list allows nobody and is not "anyone"; list at least one value, or remove the key`,
				`allow.groups (line 10): an empty list allows nobody and is not "anyone"; list at least one value, or remove the key`,
				`allow.claims (line 13): an empty list allows nobody and is not "anyone"; list at least one value, or remove the key`,
			},
		},
		{
			name: "a claim with no values",
			yaml: plus("allow:\n  claims: {roles: []}\n"),
			want: []string{"allow.claims.roles (line 10): no values; list the values that allow, e.g. [admin]"},
		},
		{
			name: "any_user: false alone",
			yaml: plus("allow:\n  any_user: false\n"),
			want: []string{"allow (line 10): has no rule, and an empty policy would let nobody in; " + fix},
		},
		{
			name: "any_user with other rules is ambiguous",
			yaml: plus("allow:\n  any_user: true\n  groups: [admins]\n"),
			want: []string{"allow.any_user (line 10): true together with other rules is ambiguous: any_user lets every signed-in user pass, so the rules would mean nothing; keep any_user: true alone, or remove it and keep the rules"},
		},
		{
			name: "any_user: true alone",
			yaml: plus("allow: {any_user: true}\n"),
			check: func(t *testing.T, c *Config) {
				equal(t, "Allow", c.Allow, Allow{AnyUser: true})
				equal(t, "catch-all allow", *c.Routes[0].Allow, Allow{AnyUser: true})
			},
		},
		{
			name:    "a route without allow and no top-level allow",
			yaml:    route(""),
			noAllow: true,
			want:    []string{"routes[0] (line 9): route wiki has no allow and there is no top-level allow, so nobody could pass it; give the route an allow, or add a top-level allow: " + fix},
		},
		{
			name:    "a route with allow alone (null)",
			yaml:    route("    allow:\n"),
			noAllow: true,
			want:    []string{"routes[0].allow (line 11): has no value, and an empty policy would let nobody in; " + fix},
		},
		{
			name: "a route with allow: {} and a top-level allow",
			yaml: route("    allow: {}\n"),
			want: []string{"routes[0].allow (line 11): has no rule, and an empty policy would let nobody in; " + fix},
		},
		{
			name: "a route with allow: {groups: []}",
			yaml: route("    allow: {groups: []}\n"),
			want: []string{`routes[0].allow.groups (line 11): an empty list allows nobody and is not "anyone"; list at least one value, or remove the key`},
		},
		{
			name:    "a partly public route still needs a policy",
			yaml:    route("    public: [/static]\n"),
			noAllow: true,
			want:    []string{"routes[0] (line 9): route wiki has no allow and there is no top-level allow, so nobody could pass it; give the route an allow, or add a top-level allow: " + fix},
		},
		{
			name:    "a wholly public route needs none",
			yaml:    route("    public: [/]\n"),
			noAllow: true,
			check: func(t *testing.T, c *Config) {
				equal(t, "WholePublic", c.Routes[0].WholePublic(), true)
			},
		},
		{
			name:    "routes with their own allow need no top-level allow",
			yaml:    route("    allow: {groups: [wiki]}\n") + "  - match: {host: www.example.com}\n    upstream: http://127.0.0.1:9001\n    public: [/]\n",
			noAllow: true,
			check: func(t *testing.T, c *Config) {
				equal(t, "top-level Allow", c.Allow, Allow{})
				equal(t, "routes[0].Allow", *c.Routes[0].Allow, Allow{Groups: []string{"wiki"}})
			},
		},
		{
			// Routes match without case, public prefixes with it: /DOCS/x
			// goes to this route and is not public.
			name:    "a route public on its own prefix with letters still needs a policy",
			yaml:    routesOnly + "routes:\n  - name: docs\n    match: {path_prefix: /docs}\n    upstream: http://127.0.0.1:9000\n    public: [/docs]\n",
			noAllow: true,
			want:    []string{"routes[0] (line 9): route docs has no allow and there is no top-level allow, so nobody could pass it; give the route an allow, or add a top-level allow: " + fix},
		},
		{
			name:    "forward-auth only needs the top-level allow",
			yaml:    routesOnly + "forward_auth:\n  mode: traefik\n",
			noAllow: true,
			want:    []string{"allow: required: every forward-auth call is judged by the top-level policy, and there is none; add a top-level allow: " + fix},
		},
		{
			name: "max_per_user 0",
			yaml: plus("session:\n  max_per_user: 0\n"),
			want: []string{"session.max_per_user (line 10): must be at least 1 (got 0); it bounds the sessions one user's logins keep, so that they cannot push other users out"},
		},
		{
			name: "max_per_user above max_sessions",
			yaml: plus("session:\n  max_sessions: 5\n  max_per_user: 6\n"),
			want: []string{"session.max_per_user (line 11): must not exceed session.max_sessions (got 6 > 5)"},
		},
		{
			name: "preserve_posts_max_bytes above 16 MiB",
			yaml: plus("session:\n  preserve_posts: true\n  preserve_posts_max_bytes: 16777217\n"),
			want: []string{"session.preserve_posts_max_bytes (line 11): must be between 1 and 16777216 bytes (got 16777217)"},
		},
		{
			name: "preserve_posts_max_bytes negative",
			yaml: plus("session:\n  preserve_posts_max_bytes: -1\n"),
			want: []string{"session.preserve_posts_max_bytes (line 10): must be between 1 and 16777216 bytes (got -1)"},
		},
		{
			name: "max_per_user defaults to 10, or max_sessions when smaller",
			yaml: plus("session:\n  max_sessions: 4\n"),
			check: func(t *testing.T, c *Config) {
				equal(t, "MaxPerUser", c.Session.MaxPerUser, 4)
			},
		},
	})
}

func TestParse_UITitle(t *testing.T) {
	runParseCases(t, []parseCase{
		{
			name:  "default",
			yaml:  plus(""),
			check: func(t *testing.T, c *Config) { equal(t, "UI.Title", c.UI.Title, "gatehouse") },
		},
		{
			name:  "set, with markup kept as text",
			yaml:  plus("ui:\n  title: \"Team <wiki> & co\"\n"),
			check: func(t *testing.T, c *Config) { equal(t, "UI.Title", c.UI.Title, "Team <wiki> & co") },
		},
		{
			name:  "sixty characters",
			yaml:  plus("ui:\n  title: " + strings.Repeat("é", 60) + "\n"),
			check: func(t *testing.T, c *Config) { equal(t, "UI.Title", c.UI.Title, strings.Repeat("é", 60)) },
		},
		{
			name: "empty",
			yaml: plus("ui:\n  title: \" \"\n"),
			want: []string{`ui.title (line 10): must name the application, e.g. "Team wiki" (got " "); leave it out for "gatehouse"`},
		},
		{
			name: "too long",
			yaml: plus("ui:\n  title: " + strings.Repeat("x", 61) + "\n"),
			want: []string{`ui.title (line 10): is 61 characters; use at most 60 (got "` + strings.Repeat("x", 61) + `")`},
		},
		{
			name: "two lines",
			yaml: plus("ui:\n  title: \"Team\\nwiki\"\n"),
			want: []string{`ui.title (line 10): must be one line of text without control characters (got "Team\nwiki")`},
		},
	})
}

func TestDeviceBinding_Config(t *testing.T) {
	base := "external_url: https://app.example.com\nupstream: http://127.0.0.1:8080\noidc:\n  issuer: https://idp.example.com\n  client_id: c\n  client_secret: s\ncookie:\n  secret: " + strings.Repeat("s", 32) + "\nallow:\n  email_domains: [example.com]\n"
	for _, tc := range []struct {
		name, yaml, err, note string
	}{
		{"default prefer", "", "", ""},
		{"require", "session:\n  device_binding: require\n", "", ""},
		{"unknown mode", "session:\n  device_binding: always\n", `"always" is not a mode`, ""},
		{"require over http", "session:\n  device_binding: require\n", "require needs an https external_url", ""},
		{"require with cookie.domain", "session:\n  device_binding: require\n", "require needs an https external_url and no cookie.domain", ""},
		{"prefer with cookie.domain", "", "", "prefer is inactive with cookie.domain"},
		{"cookie ttl too short", "session:\n  device_binding_cookie_ttl: 30s\n", "must be between 1m and 1h", ""},
		{"grace too long", "session:\n  device_binding_grace: 1h\n", "must be between 1s and 10m", ""},
		{"unknown violation", "session:\n  device_binding_violation: ban\n", `"ban" is not an action`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y := base + tc.yaml
			switch tc.name {
			case "require over http":
				y = strings.Replace(y, "https://app", "http://127.0.0.1:4180/x", 1) + "insecure_allow_http: true\n"
			case "require with cookie.domain", "prefer with cookie.domain":
				y = strings.Replace(y, "cookie:\n", "cookie:\n  domain: example.com\n", 1)
			}
			c, err := Parse([]byte(y), func(string) (string, bool) { return "", false })
			if tc.err == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				notes := strings.Join(c.Notes(), "\n")
				if (tc.note == "") != !strings.Contains(notes, "device_binding") || !strings.Contains(notes, tc.note) {
					t.Errorf("notes %q, want %q", notes, tc.note)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
		})
	}
}
