package proxy

import (
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/config"
)

// serverModel is how one family of upstream servers reads the escaped
// path it is sent, written here from the servers' documented behaviour
// and independently of readings.go: ok is false when the server refuses
// the path itself.
type serverModel struct {
	name string
	read func(escaped string) (p string, ok bool)
}

// serverModels are the servers FuzzPathReadings holds gatehouse's
// decision against.
var serverModels = []serverModel{
	// Go net/http, nginx, Express, WSGI, PHP: decode once, then resolve
	// dot segments and empty segments.
	{"generic", func(e string) (string, bool) {
		d, err := url.PathUnescape(e)
		return resolve(d), err == nil
	}},
	// Tomcat (CoyoteAdapter.parsePathParameters, then decoding, then
	// normalize), Jetty, Spring's UrlPathHelper: ";..." up to the next
	// "/" goes before decoding.
	{"tomcat", func(e string) (string, bool) {
		segs := strings.Split(e, "/")
		for i, s := range segs {
			segs[i], _, _ = strings.Cut(s, ";")
		}
		d, err := url.PathUnescape(strings.Join(segs, "/"))
		return resolve(d), err == nil
	}},
	// A servlet stack that decodes the whole path first and cuts the
	// parameters after, so "%3b" cuts as well.
	{"decode-then-cut", func(e string) (string, bool) {
		d, err := url.PathUnescape(e)
		segs := strings.Split(d, "/")
		for i, s := range segs {
			segs[i], _, _ = strings.Cut(s, ";")
		}
		return resolve(strings.Join(segs, "/")), err == nil
	}},
	// IIS: "\" separates, a segment's trailing dots and spaces go; a
	// segment of dots climbs ("..." as "..").
	{"iis", func(e string) (string, bool) {
		d, err := url.PathUnescape(e)
		return resolve(iisSegments(d, "..")), err == nil
	}},
	// The same, reading a segment of dots as nothing.
	{"iis-dropping-dots", func(e string) (string, bool) {
		d, err := url.PathUnescape(e)
		return resolve(iisSegments(d, "")), err == nil
	}},
	// A server (or a proxy before it) that decodes and parses again:
	// "#" and "?" end the path (GHSA-pxq7-h93f-9jrg).
	{"reparse", func(e string) (string, bool) {
		d, err := url.PathUnescape(e)
		if err != nil {
			return "", false
		}
		u, err := url.Parse(d)
		if err != nil {
			// What url.Parse refuses, a lenient parser still cuts.
			d, _, _ = strings.Cut(d, "#")
			d, _, _ = strings.Cut(d, "?")
			return resolve(d), true
		}
		return resolve(u.Path), u.Opaque == "" && u.Host == ""
	}},
	// An app behind something that decodes as well: it decodes twice
	// (leaving an invalid escape as it is), then cuts parameters.
	{"double-decoding", func(e string) (string, bool) {
		d, err := url.PathUnescape(e)
		return resolve(decodeLeniently(d)), err == nil
	}},
	{"double-decoding-servlet", func(e string) (string, bool) {
		d, err := url.PathUnescape(e)
		segs := strings.Split(decodeLeniently(d), "/")
		for i, s := range segs {
			segs[i], _, _ = strings.Cut(s, ";")
		}
		return resolve(strings.Join(segs, "/")), err == nil
	}},
}

// decodeLeniently decodes what url.PathUnescape would, escape by escape,
// and keeps an invalid escape as it is.
func decodeLeniently(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+3 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// resolve resolves "." and ".." segments (not above the root) and drops
// empty ones, segment by segment.
func resolve(p string) string {
	var out []string
	for s := range strings.SplitSeq(p, "/") {
		switch s {
		case "", ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, s)
		}
	}
	return "/" + strings.Join(out, "/")
}

func iisSegments(p, dots string) string {
	segs := strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == '\\' })
	for i, s := range segs {
		if j := strings.IndexByte(s, ':'); j >= 0 {
			s = s[:j] // an NTFS stream of the file or directory s[:j]
		}
		switch t, bare := strings.TrimRight(s, ". "), strings.TrimRight(s, " "); {
		case t != "" || bare == "":
			segs[i] = t
		case bare == ".":
			segs[i] = "."
		default:
			segs[i] = dots
		}
	}
	return "/" + strings.Join(segs, "/")
}

// refPublic reports whether p lies under one of the route's public
// prefixes, with case, on a segment boundary.
func refPublic(routes []config.Route, name, p string) bool {
	for _, rc := range routes {
		if rc.Name != name {
			continue
		}
		for _, pre := range rc.Public {
			if pre == "/" || p == pre || strings.HasPrefix(p, pre+"/") {
				return true
			}
		}
	}
	return false
}

// readingsYAML is FuzzPathReadings' route set: a catch-all with public
// parts, protected prefixes inside it, some with public parts of their
// own.
const readingsFuzzYAML = `routes:
  - name: site
    upstream: http://127.0.0.1:9
    public: [/public, /static/assets, /adminx]
  - name: admin
    match: {path_prefix: /admin}
    upstream: http://127.0.0.1:9
    public: [/admin/help]
  - name: api
    match: {path_prefix: /api/v1}
    upstream: http://127.0.0.1:9
    public: [/api/v1/health]
  - name: open
    match: {path_prefix: /open}
    upstream: http://127.0.0.1:9
    public: [/open]
`

// FuzzPathReadings holds gatehouse's decision on an arbitrary request
// target against every server model: when gatehouse forwards it as route
// R, every model reads the path sent under R, and when gatehouse lets it
// pass as public, every model reads a public path. A path gatehouse
// refuses as ambiguous is one some model reads under another route than
// the generic one, or cannot read.
func FuzzPathReadings(f *testing.F) {
	h, cfg := fuzzGate(f, readingsFuzzYAML)
	const host = "gate.example.com"
	for _, s := range []string{
		"/", "/admin", "/admin/x", "/admin;jsessionid=1/secret", "/admin;x", "/admin%3bx/secret", "/admin%3B/x",
		"/admin./secret", "/admin%2e/secret", "/admin%20/secret", "/admin%09/x", "/admin.%20/x", "/admin%23/x",
		"/admin%3f/x", "/public/..%23/admin", "/public/..%3F/admin", "/public;x", "/public/x;jsessionid=A",
		"/admin/page;jsessionid=B", "/ADMIN;x", "//admin;x//y", "/x/../admin;x", "/public/.. /admin",
		"/public/..%20/admin", "/public/...%20/admin", "/public/x/.../admin", "/admin.;x/y", "/admin;x./y",
		"/adminx;y", "/adminx./y", "/open;x/../admin", "/open/..;/admin", "/api/v1;x/health", "/api;x/v1/y",
		"/api/v1%2e/health", "/static/assets/x%23/../../../admin", "/admin/help;x", "/admin/help./x",
		"/admin\\x", "/admin%5cx", "/public%2fadmin", "/%2561dmin/x", "/admin%253bx/y", "/public/%2525", "/100%25",
		"/admin::$DATA/x", "/admin:$i30:$INDEX_ALLOCATION/x", "/public:x", "/v1/x:run", "/admin%3a/x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		d, fwd := decidePath(h, host, raw)
		switch d.outcome {
		case "public", "protected":
			for _, m := range serverModels {
				p, ok := m.read(fwd)
				if !ok {
					continue // that server refuses it
				}
				if got := refMatch(cfg.Routes, host, p); got != d.route {
					t.Fatalf("raw %q: gatehouse sends %q as route %s (%s), but %s reads %q: route %s", raw, fwd, d.route, d.outcome, m.name, p, got)
				}
				if d.outcome == "public" && !refPublic(cfg.Routes, d.route, p) {
					t.Fatalf("raw %q: gatehouse sends %q as public, but %s reads %q: not public", raw, fwd, m.name, p)
				}
			}
		case "ambiguous":
			// Some model must disagree with the generic reading, or fail
			// to read: gatehouse refuses no more than it must (the
			// composite reading in readings.go is the one exception,
			// modelled here by trying the models one after another).
			gen, _ := serverModels[0].read(fwd)
			want := refMatch(cfg.Routes, host, gen)
			for _, m := range serverModels[1:] {
				if p, ok := m.read(fwd); !ok || refMatch(cfg.Routes, host, p) != want {
					return
				}
			}
			if composite(fwd, want, cfg.Routes, host, false) || composite(fwd, want, cfg.Routes, host, true) {
				return
			}
			t.Fatalf("raw %q: refused as ambiguous, but every server model reads %q under route %s", raw, fwd, want)
		}
	})
}

// composite reports whether applying the servlet, IIS and reparse
// models one after another (after a second decoding if twice) moves the
// path off route want.
func composite(fwd, want string, routes []config.Route, host string, twice bool) bool {
	segs := strings.Split(fwd, "/")
	for i, s := range segs {
		segs[i], _, _ = strings.Cut(s, ";")
	}
	d, err := url.PathUnescape(strings.Join(segs, "/"))
	if err != nil {
		return true
	}
	if twice {
		d = decodeLeniently(d)
	}
	if i := strings.IndexAny(d, "#?"); i >= 0 {
		d = d[:i]
	}
	segs = strings.Split(d, "/")
	for i, s := range segs {
		segs[i], _, _ = strings.Cut(s, ";")
	}
	return refMatch(routes, host, resolve(iisSegments(strings.Join(segs, "/"), ".."))) != want
}
