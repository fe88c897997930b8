package auth

import (
	"bytes"
	"testing"
	"time"
)

func TestHeldStore_TakeOnceAndExpiry(t *testing.T) {
	var s heldStore
	now := time.Unix(1_000_000, 0)
	id := []byte("0123456789abcdef")
	if !s.put(id, []byte("sealed"), now, time.Minute) {
		t.Fatal("put refused in an empty store")
	}
	if b, ok := s.take(id, now); !ok || string(b) != "sealed" {
		t.Fatalf("take = %q, %v", b, ok)
	}
	if _, ok := s.take(id, now); ok {
		t.Fatal("second take found the form")
	}
	s.put(id, []byte("sealed"), now, time.Minute)
	if _, ok := s.take(id, now.Add(time.Minute)); ok {
		t.Error("take after the ttl returned the form")
	}
	if s.len() != 0 {
		t.Errorf("len = %d after taking an expired form", s.len())
	}
	// A form nobody takes leaves at the next put after its ttl.
	s.put(id, []byte("sealed"), now, time.Minute)
	s.put([]byte("fedcba9876543210"), []byte("other"), now.Add(time.Minute), time.Minute)
	if s.len() != 1 || s.bytes != len("other") {
		t.Errorf("after expiry: len %d, bytes %d; want 1, %d", s.len(), s.bytes, len("other"))
	}
}

func TestHeldStore_Bounded(t *testing.T) {
	var s heldStore
	now := time.Unix(1_000_000, 0)
	id := func(i int) []byte {
		return []byte{byte(i), byte(i >> 8), byte(i >> 16), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}
	}
	for i := range maxHeldForms {
		if !s.put(id(i), []byte("x"), now, time.Minute) {
			t.Fatalf("put %d refused", i)
		}
	}
	if s.put(id(maxHeldForms), []byte("x"), now, time.Minute) {
		t.Fatal("a full store of live forms took one more")
	}
	// Once the held forms expire, their room is free again.
	if !s.put(id(maxHeldForms), []byte("x"), now.Add(time.Minute), time.Minute) || s.len() != 1 {
		t.Errorf("after expiry: len %d", s.len())
	}
	big := make([]byte, maxHeldBytes)
	if s.put(id(maxHeldForms+1), big, now.Add(time.Minute), time.Minute) {
		t.Error("the byte bound let a form through")
	}
}

func TestHeldForm_SealOpen(t *testing.T) {
	f := heldForm{Subject: "alice", Method: "POST", URI: "/a?b=c", ContentType: "application/x-www-form-urlencoded", Body: []byte("x=1")}
	id, key, ref := newHeldRef()
	sealed, err := sealHeld(key, id, f.encode())
	if err != nil {
		t.Fatal(err)
	}
	id2, key2, ok := parseHeldRef(ref)
	if !ok || !bytes.Equal(id, id2) || !bytes.Equal(key, key2) {
		t.Fatal("ref does not round-trip")
	}
	plain, err := openHeld(key, id, sealed)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeHeldForm(plain)
	if err != nil || got.Subject != f.Subject || got.URI != f.URI || string(got.Body) != "x=1" || got.ContentType != f.ContentType || got.Method != "POST" {
		t.Fatalf("decode = %+v, %v", got, err)
	}
	otherID, otherKey, _ := newHeldRef()
	if _, err := openHeld(otherKey, id, sealed); err == nil {
		t.Error("another browser's key opened the form")
	}
	if _, err := openHeld(key, otherID, sealed); err == nil {
		t.Error("the form opened under another ID")
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := openHeld(key, id, sealed); err == nil {
		t.Error("a tampered form opened")
	}
}

// FuzzHeldFormCodec: decoding never panics, and what decodes re-encodes
// to the same bytes.
func FuzzHeldFormCodec(f *testing.F) {
	f.Add((&heldForm{Subject: "a", Method: "POST", URI: "/", ContentType: "x", Body: []byte("b")}).encode())
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHeldForm(b)
		if err != nil {
			return
		}
		if !bytes.Equal(h.encode(), b) {
			t.Fatalf("re-encoding %x differs", b)
		}
	})
}
