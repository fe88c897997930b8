package proxy

import (
	"net/http"
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
