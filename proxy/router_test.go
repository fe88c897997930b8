package proxy

import (
	"fmt"
	"net/url"
	"testing"
)

func TestCleanRequestPath(t *testing.T) {
	for _, tc := range []struct {
		raw     string
		clean   string
		rewrite bool
		bad     bool
	}{
		{"/", "/", false, false},
		{"/app/page", "/app/page", false, false},
		{"/app/page/", "/app/page/", false, false},
		{"/a%20b", "/a b", false, false},
		{"/public/../admin", "/admin", true, false},
		{"/public/%2e%2e/admin", "/admin", true, false},
		{"/public/%2E%2E/admin", "/admin", true, false},
		{"/public/./x", "/public/x", true, false},
		{"//public", "/public", true, false},
		{"///admin//x/", "/admin/x/", true, false},
		{"/../../etc/passwd", "/etc/passwd", true, false},
		{"/foo/secret%23/bar", "/foo/secret#/bar", false, false},
		{"/public%2fadmin", "", false, true},
		{"/public%2Fadmin", "", false, true},
		{"/public%5cadmin", "", false, true},
		{"/public/..;/admin", "", false, true},
		{"/public/.;x/admin", "", false, true},
		{"/a%00b", "", false, true},
		{"/a%0d%0ab", "", false, true},
		{"/a;jsessionid=1", "/a;jsessionid=1", false, false},
	} {
		t.Run(tc.raw, func(t *testing.T) {
			u, err := url.ParseRequestURI(tc.raw)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			clean, rewrite, err := cleanRequestPath(u)
			if (err != nil) != tc.bad {
				t.Fatalf("err = %v, want bad=%v", err, tc.bad)
			}
			if clean != tc.clean || rewrite != tc.rewrite {
				t.Errorf("= %q, %v; want %q, %v", clean, rewrite, tc.clean, tc.rewrite)
			}
		})
	}
}

func TestRouter_Match(t *testing.T) {
	mk := func(name, host, prefix string) *route { return &route{name: name, host: host, prefix: prefix} }
	rs := []*route{
		mk("catch-all", "", "/"),
		mk("any-api", "", "/api"),
		mk("wiki", "wiki.example.com", "/"),
		mk("wiki-admin", "wiki.example.com", "/admin"),
		mk("wiki-admin-deep", "wiki.example.com", "/admin/users/edit"),
		mk("star", "*.example.com", "/"),
		mk("star-eu-api", "*.eu.example.com", "/api"),
		mk("only-prefix", "docs.example.com", "/v2"),
	}
	r := newRouter(rs)
	for _, tc := range []struct{ host, path, want string }{
		{"wiki.example.com", "/", "wiki"},
		{"wiki.example.com", "/admin", "wiki-admin"},
		{"wiki.example.com", "/admin/", "wiki-admin"},
		{"wiki.example.com", "/admin/x", "wiki-admin"},
		{"wiki.example.com", "/ADMIN/x", "wiki-admin"},
		{"wiki.example.com", "/administrator", "wiki"},
		{"wiki.example.com", "/admin/users/edit/7", "wiki-admin-deep"},
		{"wiki.example.com", "/admin/users/editor", "wiki-admin"},
		{"WIKI.Example.COM:8443", "/admin", "wiki-admin"},
		{"wiki.example.com.", "/admin", "wiki-admin"},
		{"blog.example.com", "/x", "star"},
		{"a.b.example.com", "/x", "star"},
		{"x.eu.example.com", "/api/v1", "star-eu-api"},
		{"x.eu.example.com", "/other", "star"},
		{"example.com", "/x", "catch-all"},
		{"evil.com", "/api/x", "any-api"},
		{"evil.com", "/apis", "catch-all"},
		{"docs.example.com", "/v2/page", "only-prefix"},
		{"docs.example.com", "/v1/page", "star"},
		{"wiki.example.com.evil.com", "/admin", "catch-all"},
	} {
		got := r.match(tc.host, tc.path)
		name := "<nil>"
		if got != nil {
			name = got.name
		}
		if name != tc.want {
			t.Errorf("match(%q, %q) = %s, want %s", tc.host, tc.path, name, tc.want)
		}
	}
	if got := newRouter([]*route{mk("only", "a.example.com", "/x")}).match("b.example.com", "/x"); got != nil {
		t.Errorf("no route should match, got %s", got.name)
	}
}

func TestRouter_MatchDoesNotAllocate(t *testing.T) {
	var rs []*route
	for i := range 500 {
		rs = append(rs, &route{name: fmt.Sprint(i), host: fmt.Sprintf("app%d.example.com", i%50), prefix: fmt.Sprintf("/p%d/x", i)})
	}
	r := newRouter(rs)
	allocs := testing.AllocsPerRun(100, func() {
		if r.match("app7.example.com:443", "/p407/x/deep/page") == nil {
			t.Fatal("no match")
		}
	})
	if allocs != 0 {
		t.Errorf("match allocates %.1f times per call", allocs)
	}
}

func BenchmarkRouter(b *testing.B) {
	for _, n := range []int{1, 50, 500} {
		var rs []*route
		for i := range n {
			rs = append(rs, &route{name: fmt.Sprint(i), host: fmt.Sprintf("app%d.example.com", i), prefix: "/"})
			rs = append(rs, &route{name: fmt.Sprint(i), host: fmt.Sprintf("app%d.example.com", i), prefix: fmt.Sprintf("/section%d/admin", i)})
		}
		r := newRouter(rs)
		host := fmt.Sprintf("app%d.example.com", n/2)
		b.Run(fmt.Sprintf("routes=%d", 2*n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if r.match(host, "/section1/page/with/some/depth") == nil {
					b.Fatal("no match")
				}
			}
		})
	}
}
