package sessions

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

const testCookie = "__Host-gatehouse"

// newSecret returns a fresh random cookie secret.
func newSecret() []byte {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}

func newTestCodec(t testing.TB, name, purpose string, secrets ...[]byte) *Codec {
	t.Helper()
	c, err := NewCodec(name, purpose, secrets, time.Hour)
	if err != nil {
		t.Fatalf("NewCodec(%q, %q, %d secrets): %v", name, purpose, len(secrets), err)
	}
	return c
}

func TestCodec_RoundTrip(t *testing.T) {
	c := newTestCodec(t, testCookie, "session", newSecret())
	if c.Name() != testCookie {
		t.Errorf("Name() = %q, want %q", c.Name(), testCookie)
	}
	for _, plain := range [][]byte{{0}, []byte("hello"), bytes.Repeat([]byte{0xff}, 1000)} {
		want := bytes.Clone(plain) // see TestCodec_SealKeepsPlaintext
		v, err := c.Seal(plain)
		if err != nil {
			t.Fatalf("Seal(%d bytes): %v", len(want), err)
		}
		if bytes.Contains([]byte(v), want) && len(want) > 2 {
			t.Errorf("Seal(%q) = %q contains the plaintext", want, v)
		}
		got, err := c.Open(v)
		if err != nil {
			t.Fatalf("Open(Seal(%d bytes)): %v", len(want), err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("Open(Seal(%.40x)) = %.40x", want, got)
		}
	}

	id := NewID()
	v, err := c.SealID(id)
	if err != nil {
		t.Fatalf("SealID: %v", err)
	}
	got, err := c.OpenID(v)
	if err != nil || got != id {
		t.Fatalf("OpenID(SealID(id)) = %v, %v; want %v, nil", got, err, id)
	}
	v2, _ := c.SealID(id)
	if v2 == v {
		t.Errorf("two seals of one ID are equal (%q): want a fresh IV each time", v)
	}
}

// TestCodec_SealKeepsPlaintext: Seal must not write to its argument.
// With securecookie's NopEncoder the plaintext slice itself reaches the
// AES-CTR step, which XORs the keystream into it in place.
func TestCodec_SealKeepsPlaintext(t *testing.T) {
	c := newTestCodec(t, testCookie, "login", newSecret(), newSecret())
	plain := []byte(`[{"state":"abc","nonce":"def"}]`)
	want := bytes.Clone(plain)
	if _, err := c.Seal(plain); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(plain, want) {
		t.Errorf("Seal changed its argument from %q to %q", want, plain)
	}

	// The same through SealID, which passes a slice of its own copy.
	id := NewID()
	before := id
	c.SealID(id)
	if id != before {
		t.Errorf("SealID changed the caller's ID")
	}
}

// TestCodec_SealEmpty: whatever Seal accepts, Open must give back.
// securecookie's decrypt needs more than the IV, so an empty plaintext
// seals to a value that never opens; Seal should refuse it instead.
func TestCodec_SealEmpty(t *testing.T) {
	c := newTestCodec(t, testCookie, "session", newSecret())
	v, err := c.Seal(nil)
	if err == nil {
		t.Errorf("Seal(empty) = %q, nil; want an error", v)
	}
}

// TestCodec_Rotation shows key rotation: the first secret seals, every
// secret opens.
func TestCodec_Rotation(t *testing.T) {
	prev, next := newSecret(), newSecret()
	old := newTestCodec(t, testCookie, "session", prev)
	rotated := newTestCodec(t, testCookie, "session", next, prev)
	newOnly := newTestCodec(t, testCookie, "session", next)

	id := NewID()
	oldValue, err := old.SealID(id)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := rotated.OpenID(oldValue); err != nil || got != id {
		t.Errorf("[new, previous] codec opening a value sealed with previous = %v, %v; want the ID", got, err)
	}
	if _, err := newOnly.OpenID(oldValue); !errors.Is(err, ErrCookie) {
		t.Errorf("[new] codec opening a value sealed with previous: error = %v, want ErrCookie", err)
	}

	newValue, err := rotated.SealID(id)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := newOnly.OpenID(newValue); err != nil || got != id {
		t.Errorf("[new] codec opening a value sealed by [new, previous] = %v, %v; want the ID: sealing must use the first secret", got, err)
	}
	if _, err := old.OpenID(newValue); !errors.Is(err, ErrCookie) {
		t.Errorf("[previous] codec opening a value sealed by [new, previous]: error = %v, want ErrCookie", err)
	}
}

// TestCodec_Tampered changes every character of sealed values to every
// other base64url character, padding and bit flip in turn; none may open.
// Plaintexts of several lengths are sealed because the length decides
// whether the base64 text ends in padding, and with it spare bits in the
// last character.
func TestCodec_Tampered(t *testing.T) {
	c := newTestCodec(t, testCookie, "session", newSecret())
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_="
	for _, n := range []int{IDBytes, 1, 2, 29, 30, 31, 33, 100} {
		t.Run(fmt.Sprintf("%d-byte plaintext", n), func(t *testing.T) {
			plain := bytes.Repeat([]byte{'p'}, n)
			v, err := c.Seal(plain)
			if err != nil {
				t.Fatal(err)
			}
			if n == IDBytes {
				// Prime OpenID's cache of opened values with the original.
				if _, err := c.OpenID(v); err != nil {
					t.Fatal(err)
				}
			}
			var opened []string
			for i := range len(v) {
				tried := map[byte]bool{v[i]: true}
				var repl []byte
				for bit := range 8 {
					repl = append(repl, v[i]^(1<<bit))
				}
				repl = append(repl, alphabet...)
				for _, r := range repl {
					if tried[r] {
						continue
					}
					tried[r] = true
					bad := v[:i] + string(r) + v[i+1:]
					if got, err := c.Open(bad); !errors.Is(err, ErrCookie) {
						opened = append(opened, fmt.Sprintf("byte %d %q→%q opened to %q (err %v)", i, v[i], r, got, err))
					}
					if n == IDBytes {
						if got, err := c.OpenID(bad); !errors.Is(err, ErrCookie) {
							opened = append(opened, fmt.Sprintf("byte %d %q→%q: OpenID = %v, %v", i, v[i], r, got, err))
						}
					}
				}
			}
			if len(opened) > 0 {
				t.Errorf("%d of the tampered versions of %q opened; want none. First: %s",
					len(opened), v, strings.Join(opened[:min(3, len(opened))], "; "))
			}
		})
	}
}

func TestCodec_Truncated(t *testing.T) {
	c := newTestCodec(t, testCookie, "session", newSecret())
	for _, n := range []int{IDBytes, 1, 33} {
		v, err := c.Seal(bytes.Repeat([]byte{'p'}, n))
		if err != nil {
			t.Fatal(err)
		}
		for i := range len(v) {
			if got, err := c.Open(v[:i]); !errors.Is(err, ErrCookie) {
				t.Errorf("Open(first %d of %d bytes of %q) = %q, %v; want ErrCookie", i, len(v), v, got, err)
			}
		}
	}
}

func TestCodec_Rejects(t *testing.T) {
	secret := newSecret()
	session := newTestCodec(t, testCookie, "session", secret)
	id := NewID()
	sealed := func(c *Codec) string {
		v, err := c.SealID(id)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	sealedPlain := func(n int) string {
		v, err := session.Seal(bytes.Repeat([]byte{1}, n))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name  string
		value string
	}{
		{"empty", ""},
		{"garbage", "not a cookie"},
		{"base64 garbage", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
		{"other cookie name", sealed(newTestCodec(t, "a", "session", secret))},
		{"other purpose, same secret", sealed(newTestCodec(t, testCookie, "login", secret))},
		{"other secret", sealed(newTestCodec(t, testCookie, "session", newSecret()))},
		{"over-long", strings.Repeat("A", MaxCookieBytes+1)},
		{"over-long with a real value inside", sealed(session) + strings.Repeat("=", MaxCookieBytes)},
		{"exactly the limit, garbage", strings.Repeat("A", MaxCookieBytes)},
		{"plaintext one byte short", sealedPlain(IDBytes - 1)},
		{"plaintext one byte long", sealedPlain(IDBytes + 1)},
		{"value with a space", " " + sealed(session)},
		{"doubled value", sealed(session) + sealed(session)},
		// base64 decoders skip CR and LF; the sealed value must still be
		// taken byte for byte.
		{"line break inside", sealed(session)[:10] + "\n" + sealed(session)[10:]},
		{"CRLF inside", sealed(session)[:10] + "\r\n" + sealed(session)[10:]},
		{"trailing line break", sealed(session) + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := session.OpenID(tt.value)
			if !errors.Is(err, ErrCookie) {
				t.Errorf("OpenID(%.60q) = %v, %v; want ErrCookie", tt.value, got, err)
			}
			if got != (ID{}) {
				t.Errorf("OpenID returned a non-zero ID %v with error %v", got, err)
			}
		})
	}

	t.Run("name binding both ways", func(t *testing.T) {
		a := newTestCodec(t, "a", "session", secret)
		b := newTestCodec(t, "b", "session", secret)
		v := sealed(a)
		if _, err := b.OpenID(v); !errors.Is(err, ErrCookie) {
			t.Errorf("value sealed for cookie a opened under b: err %v", err)
		}
		if got, err := a.OpenID(v); err != nil || got != id {
			t.Errorf("value sealed for cookie a under a = %v, %v", got, err)
		}
	})

	t.Run("purpose separation both ways", func(t *testing.T) {
		login := newTestCodec(t, testCookie, "login", secret)
		if _, err := session.Open(sealed(login)); !errors.Is(err, ErrCookie) {
			t.Errorf("login value opened as session: err %v", err)
		}
		if _, err := login.Open(sealed(session)); !errors.Is(err, ErrCookie) {
			t.Errorf("session value opened as login: err %v", err)
		}
	})
}

func TestCodec_SealTooLong(t *testing.T) {
	c := newTestCodec(t, testCookie, "session", newSecret())
	if v, err := c.Seal(make([]byte, MaxCookieBytes)); err == nil {
		t.Errorf("Seal(%d bytes) = %d-byte value, nil; want an error (over %d)", MaxCookieBytes, len(v), MaxCookieBytes)
	}
	// The longest plaintext that still seals must open again.
	lo, hi := 0, MaxCookieBytes
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if _, err := c.Seal(make([]byte, mid)); err == nil {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	v, err := c.Seal(make([]byte, lo))
	if err != nil {
		t.Fatal(err)
	}
	if len(v) > MaxCookieBytes {
		t.Errorf("sealed value is %d bytes, over %d", len(v), MaxCookieBytes)
	}
	if _, err := c.Open(v); err != nil {
		t.Errorf("Open(longest sealable value, %d bytes): %v", len(v), err)
	}
}

// TestCodec_MaxAge checks the cookie's own age limit. securecookie reads
// the wall clock (time.Now, in whole seconds) and takes no injected clock,
// so the test runs in a synctest bubble, where time.Now is fake: the
// Sleeps advance that fake clock instantly and synchronise nothing.
//
// OpenID answers a value it opened before from a cache without checking
// its age again (see its doc comment), so every check below opens a value
// for the first time.
func TestCodec_MaxAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const maxAge = time.Hour
		c, err := NewCodec(testCookie, "session", [][]byte{newSecret()}, maxAge)
		if err != nil {
			t.Fatal(err)
		}
		seal := func() string {
			v, err := c.SealID(NewID())
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		atLimit, pastLimit, pastLimitID := seal(), seal(), seal()

		time.Sleep(maxAge) // exactly maxAge old: still opens
		if _, err := c.Open(atLimit); err != nil {
			t.Fatalf("Open at exactly maxAge: %v, want nil", err)
		}
		time.Sleep(time.Second) // securecookie counts whole seconds
		if _, err := c.Open(pastLimit); !errors.Is(err, ErrCookie) {
			t.Errorf("Open 1s past maxAge: error = %v, want ErrCookie", err)
		}
		if _, err := c.OpenID(pastLimitID); !errors.Is(err, ErrCookie) {
			t.Errorf("OpenID 1s past maxAge: error = %v, want ErrCookie", err)
		}
		// A fresh seal opens again: the limit is the value's age.
		if _, err := c.OpenID(seal()); err != nil {
			t.Errorf("OpenID of a fresh value: %v", err)
		}
	})
}

func TestNewCodec_Errors(t *testing.T) {
	for _, secrets := range [][][]byte{nil, {}} {
		if c, err := NewCodec(testCookie, "session", secrets, time.Hour); err == nil || c != nil {
			t.Errorf("NewCodec(%d secrets) = %v, %v; want nil, error", len(secrets), c, err)
		}
	}
}

// TestCodec_Concurrent shares one codec between goroutines; run with -race.
func TestCodec_Concurrent(t *testing.T) {
	c := newTestCodec(t, testCookie, "session", newSecret(), newSecret())
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				id := NewID()
				v, err := c.SealID(id)
				if err != nil {
					t.Error(err)
					return
				}
				if got, err := c.OpenID(v); err != nil || got != id {
					t.Errorf("OpenID(SealID) = %v, %v", got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}
