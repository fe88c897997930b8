package direct

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// FuzzHopByHopLists: listedIn and removeHopByHop, now reading lists with
// httpfield.NextListItem, find what their own parsers found (kept here as
// they were, refListedIn and refRemoveHopByHop), for any Connection
// value and header name. An empty name is left out: net/http never hands
// over a header without a name, and the old listedIn took an empty item
// before a comma to list it, which ReverseProxy does not.
func FuzzHopByHopLists(f *testing.F) {
	for _, s := range [][2]string{{"keep-alive, X-Drop", "X-Drop"}, {"close", "Close"}, {" x-drop ,", "X-Drop"},
		{",,\t X-Drop\r\n", "X-Drop"}, {"X-Drop\u00a0", "X-Drop"}, {"te, trailers", "Trailers"}, {"", "A"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, value, name string) {
		if name == "" {
			t.Skip("header names are never empty")
		}
		for _, values := range [][]string{{value}, {"keep-alive", value}} {
			if got, want := listedIn(values, name), refListedIn(values, name); got != want {
				t.Fatalf("listedIn(%q, %q) = %v, the old parse %v", values, name, got, want)
			}
		}
		got := http.Header{"Connection": {value}, name: {"1"}, "X-Keep": {"1"}, "Keep-Alive": {"1"}}
		want := got.Clone()
		removeHopByHop(got)
		refRemoveHopByHop(want)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("removeHopByHop left %v, the old parse %v", got, want)
		}
	})
}

// refListedIn is listedIn before it used httpfield.
func refListedIn(values []string, name string) bool {
	for _, v := range values {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			if equalFoldASCII(strings.Trim(tok, " \t\r\n"), name) {
				return true
			}
		}
	}
	return false
}

// refRemoveHopByHop is removeHopByHop before it used httpfield.
func refRemoveHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = strings.Trim(sf, " \t\r\n"); sf != "" {
				h.Del(sf)
			}
		}
	}
	for _, k := range hopByHop {
		delete(h, k)
	}
}
