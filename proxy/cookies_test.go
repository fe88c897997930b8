package proxy

import (
	"net/http"
	"strings"
	"testing"
)

func TestStripCookies(t *testing.T) {
	own := func(n string) bool { return n == "gatehouse" || n == "gatehouse_login" }
	for _, tc := range []struct {
		in   []string
		want []string
	}{
		{[]string{"gatehouse=a"}, nil},
		{[]string{"gatehouse=a; app=1"}, []string{"app=1"}},
		{[]string{"app=1; gatehouse=a"}, []string{"app=1"}},
		{[]string{"app=1; gatehouse=a; b=2"}, []string{"app=1; b=2"}},
		{[]string{"app=1;gatehouse=a;b=2; c=3"}, []string{"app=1; b=2; c=3"}},
		{[]string{"app=1", "gatehouse=a"}, []string{"app=1"}},
		{[]string{"x=1; y=2"}, []string{"x=1; y=2"}},
		{[]string{"gatehouse=a; gatehouse_login=b; x=1"}, []string{"x=1"}},
		{[]string{"x=1; gatehouse=a; gatehouse_login=b"}, []string{"x=1"}},
		{[]string{" gatehouse=a ;  x=1  "}, []string{"x=1"}},
		{[]string{"GATEHOUSE=a; x=1"}, []string{"GATEHOUSE=a; x=1"}},
		{[]string{""}, nil},
	} {
		h := http.Header{"Cookie": append([]string(nil), tc.in...)}
		stripCookies(h, own)
		got := h["Cookie"]
		if len(got) != len(tc.want) {
			t.Errorf("%q: got %q want %q", tc.in, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%q: got %q want %q", tc.in, got, tc.want)
			}
		}
	}
	h := http.Header{"Cookie": {"gatehouse=a; app_pref=dark"}}
	if n := testing.AllocsPerRun(100, func() { h["Cookie"][0] = "gatehouse=a; app_pref=dark"; stripCookies(h, own) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

// FuzzWithoutOwnCookies: withoutOwnCookies, now reading the line with
// httpfield.NextCookie, returns what the scanner it replaced returned
// (refWithoutOwnCookies, kept here as it was), for any line: the same
// cookies reach the upstream, and gatehouse's never do.
func FuzzWithoutOwnCookies(f *testing.F) {
	for _, s := range []string{"gatehouse=a", "app=1; gatehouse=a; b=2", "app=1;gatehouse=a;b=2; c=3", " gatehouse=a ;  x=1  ",
		"\u00a0gatehouse=a; x=1", "x=1;\u00a0gatehouse=a ;y=\"2\"", ";;gatehouse;; x", "gatehouse_login=\"q\"; \tgatehouse=a\t; x=1\v", ""} {
		f.Add(s)
	}
	own := func(n string) bool { return n == "gatehouse" || n == "gatehouse_login" }
	f.Fuzz(func(t *testing.T, line string) {
		if got, want := withoutOwnCookies(line, own), refWithoutOwnCookies(line, own); got != want {
			t.Errorf("withoutOwnCookies(%q) = %q, want %q", line, got, want)
		}
	})
}

// refWithoutOwnCookies is withoutOwnCookies before it used httpfield.
func refWithoutOwnCookies(line string, own func(string) bool) string {
	first, end := -1, 0
	gap := false
	seenOwnAfterKept := false
	for i := 0; i < len(line); {
		j := strings.IndexByte(line[i:], ';')
		if j < 0 {
			j = len(line) - i
		}
		pair := line[i : i+j]
		start := i + (len(pair) - len(strings.TrimLeft(pair, " \t")))
		name, _, _ := strings.Cut(strings.TrimSpace(pair), "=")
		if own(name) {
			if first >= 0 {
				seenOwnAfterKept = true
			}
		} else if strings.TrimSpace(pair) != "" {
			if seenOwnAfterKept {
				gap = true
			}
			if first < 0 {
				first = start
			}
			end = i + len(strings.TrimRight(pair, " \t"))
		}
		i += j + 1
	}
	switch {
	case first < 0:
		return ""
	case !gap:
		return line[first:end]
	}
	var b strings.Builder
	for pair := range strings.SplitSeq(line, ";") {
		p := strings.TrimSpace(pair)
		name, _, _ := strings.Cut(p, "=")
		if p == "" || own(name) {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p)
	}
	return b.String()
}
