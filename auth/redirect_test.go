package auth

import (
	"net/url"
	"strings"
	"testing"
)

// openRedirects are post-login targets that must never leave the origin.
// They follow the families of published bypasses (CVE-2020-5233,
// CVE-2020-11053, CVE-2020-4037, CVE-2021-21291, Vouch Proxy's list) and
// of oauth2-proxy's openredirects corpus.
var openRedirects = []string{
	"//evil.com",
	"///evil.com",
	"////evil.com",
	"/\\evil.com",
	"\\\\evil.com",
	"/\\/evil.com",
	"/\t/evil.com",
	"/\n/evil.com",
	"/\r/evil.com",
	"/\v/evil.com",
	"/ /evil.com",
	"/%09/evil.com",
	"/%0a/evil.com",
	"/%0d/evil.com",
	"/%5Cevil.com",
	"/%5c%5cevil.com",
	"/%2F/evil.com",
	"/%2f%2fevil.com",
	"%2F%2Fevil.com",
	"/\t\t/\t\\evil.com",
	"/./\\evil.com",
	"/./../../\\evil.com",
	"/.//evil.com",
	"/../evil.com",
	"/%2e%2e/evil.com",
	"https://evil.com",
	"http://evil.com/",
	"HTTPS://evil.com",
	"HTTPS:evil.com",
	"HTTPS:/evil.com",
	"HTTPS:///gate.example.com/x",
	"HTTPS:\\\\gate.example.com/x",
	"JAVASCRIPT://gate.example.com/%0aalert(1)",
	"FTP://gate.example.com/x",
	"https:evil.com",
	"https:/evil.com",
	"https:///evil.com",
	"http:\\\\evil.com",
	"//evil.com/%2f..",
	"javascript:alert(1)",
	"java%09script:alert(1)",
	"JaVaScRiPt:alert(1)",
	"data:text/html,<script>alert(1)</script>",
	"vbscript:msgbox(1)",
	"https://gate.example.com@evil.com",
	"https://gate.example.com:443@evil.com",
	"https://gate.example.com%40evil.com",
	"https://evil.com\\@gate.example.com",
	"https://evil.com#@gate.example.com",
	"https://evil.com?@gate.example.com",
	"https://gate.example.com.evil.com",
	"https://evilgate.example.com",
	"https://gate.example.com%2eevil.com",
	"https://0xd83ad6ce/",
	"https://3627734734/",
	"https://[::ffff:216.58.214.206]/",
	"/〱evil.com",
	"〱evil.com",
	"https://evil.com%E3%80%82gate.example.com",
	"https://evil%00.gate.example.com",
	"<>//evil.com",
	"/?url=https://evil.com",
	"/a?next=//evil.com",
	"/a?next=https%3A%2F%2Fevil.com",
	"evil.com",
	"",
	"/" + strings.Repeat("a", MaxRedirectBytes),
}

func TestRedirects_RefuseOpenRedirects(t *testing.T) {
	r := NewRedirects("gate.example.com", ".apps.example.com")
	for _, target := range openRedirects {
		t.Run(target, func(t *testing.T) {
			if got := r.Safe(target); got != "/" {
				t.Errorf("Safe(%q) = %q, want /", target, got)
			}
		})
	}
	if len(openRedirects) < 30 {
		t.Fatalf("only %d payloads", len(openRedirects))
	}
}

func TestRedirects_AllowSafeTargets(t *testing.T) {
	r := NewRedirects("gate.example.com", ".apps.example.com")
	for _, target := range []string{
		"/",
		"/reports",
		"/reports/2026?q=a%20b&sort=desc",
		"/path/with%20space",
		"/a?time=10:30&tags=a,b",
		"/a#frag",
		"/a:b",
		"https://gate.example.com/",
		"https://gate.example.com/x?y=1",
		"http://gate.example.com/x",
		"https://wiki.apps.example.com/page",
		"https://wiki.apps.example.com:8443/page",
		// Schemes are case-insensitive (RFC 3986 §3.1).
		"HTTPS://gate.example.com/x",
		"Https://wiki.apps.example.com/page",
		"HTTP://gate.example.com/x",
	} {
		if got := r.Safe(target); got != target {
			t.Errorf("Safe(%q) = %q, want it kept", target, got)
		}
	}
}

func TestRedirects_SuffixNeedsLeadingDot(t *testing.T) {
	// CVE-2021-21291: an allow-list entry .bar.foo must not allow
	// evilbar.foo, nor bar.foo itself.
	r := NewRedirects(".bar.foo")
	for target, want := range map[string]string{
		"https://x.bar.foo/":   "https://x.bar.foo/",
		"https://evilbar.foo/": "/",
		"https://bar.foo/":     "/",
		"https://.bar.foo/":    "/",
	} {
		if got := r.Safe(target); got != want {
			t.Errorf("Safe(%q) = %q, want %q", target, got, want)
		}
	}
}

// FuzzRedirect checks the validator's promise for any input: an accepted
// target, as a browser would resolve it against the external origin, stays
// on an allowed host, and uses http(s).
func FuzzRedirect(f *testing.F) {
	for _, s := range openRedirects {
		f.Add(s)
	}
	f.Add("/reports?q=1")
	f.Add("https://gate.example.com/x")
	base, _ := url.Parse("https://gate.example.com/start")
	r := NewRedirects("gate.example.com", ".apps.example.com")
	f.Fuzz(func(t *testing.T, target string) {
		got := r.Safe(target)
		if got != "/" && got != target {
			t.Fatalf("Safe(%q) = %q: neither the target nor /", target, got)
		}
		// Resolve as a browser does, after its own clean-ups: it reads
		// backslash as slash and drops tab, CR and LF.
		browser := strings.NewReplacer("\\", "/", "\t", "", "\r", "", "\n", "").Replace(got)
		u, err := base.Parse(browser)
		if err != nil {
			t.Fatalf("accepted %q that does not parse: %v", got, err)
		}
		if u.Scheme != "https" && u.Scheme != "http" {
			t.Fatalf("accepted %q resolves to scheme %q", got, u.Scheme)
		}
		host := strings.ToLower(u.Hostname())
		if host != "gate.example.com" && !strings.HasSuffix(host, ".apps.example.com") {
			t.Fatalf("accepted %q resolves to host %q", got, u.Host)
		}
	})
}
