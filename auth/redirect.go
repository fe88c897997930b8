package auth

import (
	"net/url"
	"strings"
)

// MaxRedirectBytes bounds a post-login redirect target; longer ones fall
// back to "/".
const MaxRedirectBytes = 2048

// Redirects decides where a browser may be sent after login: a path on
// gatehouse's own origin, or an absolute http(s) URL on an allowed host.
// Everything else falls back to "/" (RFC 9700 §4.11: clients MUST NOT be
// open redirectors).
//
// The rules are deliberately stricter than what a browser needs, because
// browsers "fix" URLs in ways that turn paths into hosts: they read \ as /,
// drop tab, CR and LF, and treat //host as another origin. So a target is
// refused when it, or its path decoded once, holds
//   - a backslash, a control character, whitespace or a non-ASCII byte
//     (CVE-2020-5233 "/\evil.com", CVE-2020-11053 "/%09/evil.com");
//   - "//", "/./" or "/../" anywhere (CVE-2020-4037 "/./\\evil.com");
//   - a scheme other than http(s) (in any case: HTTPS:// is https), a
//     user name, or an opaque part ("https:evil.com", "javascript:",
//     "data:");
//   - a query carrying another URL ("?next=https://evil.com"), which the
//     app might follow (redirect chaining);
//   - for absolute URLs, a host that is not allowed exactly or as a
//     subdomain of an entry starting with "." (CVE-2021-21291: ".bar.foo"
//     must not allow "evilbar.foo").
//
// A Redirects is immutable and safe for concurrent use.
type Redirects struct {
	hosts    map[string]bool // exact host[:port], lower case
	suffixes []string        // ".example.com": any subdomain, any port
}

// NewRedirects allows absolute targets on the given hosts: "host",
// "host:port", or ".example.com" for every subdomain of example.com.
func NewRedirects(hosts ...string) *Redirects {
	r := &Redirects{hosts: map[string]bool{}}
	for _, h := range hosts {
		h = strings.ToLower(h)
		if strings.HasPrefix(h, ".") {
			r.suffixes = append(r.suffixes, h)
		} else if h != "" {
			r.hosts[h] = true
		}
	}
	return r
}

// Safe returns target when it is a safe post-login destination, and "/"
// otherwise.
func (r *Redirects) Safe(target string) string {
	if r.ok(target) {
		return target
	}
	return "/"
}

func (r *Redirects) ok(target string) bool {
	if target == "" || len(target) > MaxRedirectBytes || !cleanChars(target) {
		return false
	}
	u, err := url.Parse(target)
	if err != nil || u.Opaque != "" || u.User != nil {
		return false
	}
	if u.Scheme == "" && u.Host == "" {
		// A path on this origin: exactly one leading slash.
		if !strings.HasPrefix(target, "/") || strings.HasPrefix(target, "//") {
			return false
		}
	} else {
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || !r.hostAllowed(u.Host) {
			return false
		}
		// The scheme must be followed by exactly "//host": no
		// "http:/\host" or "http:host". Schemes are case-insensitive (RFC
		// 3986 §3.1; url.Parse lowers it), so "HTTPS://host" is https.
		n := len(u.Scheme)
		if len(target) < n || !strings.EqualFold(target[:n], u.Scheme) || !strings.HasPrefix(target[n:], "://"+u.Host) {
			return false
		}
	}
	return cleanPath(u.EscapedPath()) && cleanPath(u.Path) && cleanDecoded(u.Path) && !carriesURL(u.RawQuery)
}

// carriesURL reports whether a query holds another absolute or
// scheme-relative URL ("?url=https://evil.com", "?next=//evil.com"): the
// app behind gatehouse might redirect to it, chaining an open redirect
// through gatehouse's login (Vouch Proxy refuses these too).
func carriesURL(rawQuery string) bool {
	q, err := url.QueryUnescape(rawQuery)
	if err != nil {
		return true
	}
	q = strings.ToLower(q)
	// Also once more encoded: ?next=https%253A%252F%252Fevil.com decodes
	// to https%3a%2f%2fevil.com, which an app may decode again.
	for _, s := range []string{"://", "=//", ":/", "%3a%2f", "%2f%2f", "%5c"} {
		if strings.Contains(q, s) {
			return true
		}
	}
	return false
}

func (r *Redirects) hostAllowed(host string) bool {
	host = strings.ToLower(host)
	if r.hosts[host] {
		return true
	}
	name := host
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		name = host[:i]
	}
	for _, s := range r.suffixes {
		if strings.HasSuffix(name, s) && len(name) > len(s) {
			return true
		}
	}
	return false
}

// cleanChars refuses backslashes, control characters, whitespace and
// non-ASCII bytes.
func cleanChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

// cleanDecoded refuses a decoded path holding a backslash, a control
// character or a non-ASCII byte ("/%09/evil.com", "/%5Cevil.com", the
// fullwidth solidus "/%EF%BC%8F", which Unicode normalisation turns into
// "/"), or still holding an encoded slash, backslash, control character
// or percent sign (double encoding: "/%252f/evil.com"). An encoded space
// is fine.
func cleanDecoded(p string) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < ' ' || c >= 0x7f || c == '\\' {
			return false
		}
		if c == '%' && i+2 < len(p) {
			if d, ok := unhex2(p[i+1], p[i+2]); ok && (d <= ' ' || d >= 0x7f || d == '/' || d == '\\' || d == '%') {
				return false
			}
		}
	}
	return true
}

func unhex2(a, b byte) (byte, bool) {
	x, ok1 := unhex(a)
	y, ok2 := unhex(b)
	return x<<4 | y, ok1 && ok2
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// cleanPath refuses "//", "/./" and "/../" anywhere in a path, and a
// trailing "/." or "/..".
func cleanPath(p string) bool {
	if strings.Contains(p, "//") || strings.Contains(p, "/./") || strings.Contains(p, "/../") {
		return false
	}
	return !strings.HasSuffix(p, "/.") && !strings.HasSuffix(p, "/..")
}
