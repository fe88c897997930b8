package httpfield

import (
	"slices"
	"strings"
	"testing"
)

// FuzzNextListItem: NextListItem yields, for any list, the items the
// parsers it replaced found — strings.Split on "," then a trim: the
// direct path's removeHopByHop (strings.Trim(" \t\r\n")), proxy's
// protectConnection and auth's clientIP (strings.TrimSpace) — and the
// offsets it returns lead through the list to its end.
func FuzzNextListItem(f *testing.F) {
	for _, s := range []string{"", ",", "a", "a,", ",a", " a , b ,, c ", "keep-alive, X-Forwarded-User",
		"\u00a0X-Auth\u00a0,\u0085x", "\t\r\n a\r\n", "203.0.113.1, 198.51.100.2", "a,\xff,\xc2\xa0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, list string) {
		for _, tc := range []struct {
			sp   ListSpace
			trim func(string) string
		}{
			{ASCIISpace, func(s string) string { return strings.Trim(s, " \t\r\n") }},
			{UnicodeSpace, strings.TrimSpace},
		} {
			var want []string
			for _, item := range strings.Split(list, ",") {
				want = append(want, tc.trim(item))
			}
			var got []string
			last := 0
			for item, i, ok := NextListItem(list, 0, tc.sp); ok; item, i, ok = NextListItem(list, i, tc.sp) {
				if i <= last && len(got) > 0 {
					t.Fatalf("NextListItem(%q) did not advance: %d after %d", list, i, last)
				}
				got = append(got, item)
				last = i
				if len(got) > len(list)+1 {
					t.Fatalf("NextListItem(%q) yields more items than the list can hold", list)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("NextListItem(%q, space %d) = %q; the old parse %q", list, tc.sp, got, want)
			}
			if last != len(list)+1 {
				t.Fatalf("NextListItem(%q) ended at %d, want %d", list, last, len(list)+1)
			}
		}
	})
}
