package sessions

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

func TestNewID_Distinct(t *testing.T) {
	const n = 10000
	seen := make(map[ID]bool, n)
	for range n {
		id := NewID()
		if id == (ID{}) {
			t.Fatal("NewID returned the zero ID")
		}
		if seen[id] {
			t.Fatalf("NewID repeated %v within %d calls", id, n)
		}
		seen[id] = true
	}
}

// TestID_NotRevealed checks that the ways an ID is meant to be printed
// carry neither its bytes nor any common encoding of them.
func TestID_NotRevealed(t *testing.T) {
	for range 100 {
		id := NewID()
		secrets := map[string]string{
			"raw bytes":    string(id[:]),
			"hex":          hex.EncodeToString(id[:]),
			"HEX":          strings.ToUpper(hex.EncodeToString(id[:])),
			"std base64":   base64.StdEncoding.EncodeToString(id[:]),
			"url base64":   base64.URLEncoding.EncodeToString(id[:]),
			"raw base64":   base64.RawStdEncoding.EncodeToString(id[:]),
			"raw url b64":  base64.RawURLEncoding.EncodeToString(id[:]),
			"hex prefix":   hex.EncodeToString(id[:6]), // LogID's length
			"byte list":    fmt.Sprint(id[:]),
			"b64 prefix":   base64.RawURLEncoding.EncodeToString(id[:9]),
			"first 8 hex":  hex.EncodeToString(id[:4]),
			"last 8 hex":   hex.EncodeToString(id[28:]),
			"std b64 head": base64.RawStdEncoding.EncodeToString(id[:6]),
		}
		printed := map[string]string{
			"LogID":   id.LogID(),
			"String":  id.String(),
			"%v":      fmt.Sprintf("%v", id),
			"%s":      fmt.Sprintf("%s", id),
			"%q":      fmt.Sprintf("%q", id),
			"%x":      fmt.Sprintf("%x", id),
			"%+v":     fmt.Sprintf("%+v", id),
			"*ID %v":  fmt.Sprintf("%v", &id),
			"in %v":   fmt.Sprintf("%v", struct{ ID ID }{id}),
			"Session": fmt.Sprintf("%v", Session{ID: id}.ID),
		}
		for how, out := range printed {
			for what, secret := range secrets {
				if strings.Contains(out, secret) {
					t.Fatalf("%s of ID %x = %q contains its %s %q", how, id[:], out, what, secret)
				}
			}
		}
	}
}

func TestID_LogID(t *testing.T) {
	id := NewID()
	a, b := id.LogID(), id.LogID()
	if a != b {
		t.Errorf("LogID not stable: %q then %q", a, b)
	}
	if len(a) != 12 || strings.Trim(a, "0123456789abcdef") != "" {
		t.Errorf("LogID = %q, want 12 lower-case hex digits", a)
	}
	if copyID := id; copyID.LogID() != a {
		t.Errorf("LogID of a copy = %q, want %q", copyID.LogID(), a)
	}
	if got, want := id.String(), "sid:"+a; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	other := id
	other[IDBytes-1] ^= 1
	if other.LogID() == a {
		t.Errorf("IDs differing in one bit share LogID %q", a)
	}
}
