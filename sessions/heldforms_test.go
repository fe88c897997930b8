package sessions

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
)

func TestMemory_HeldFormTakeOnceAndExpiry(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	m, err := NewMemory(10, Options{IdleTimeout: time.Hour, AbsoluteTimeout: 8 * time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	id := []byte("0123456789abcdef")
	if ok, err := m.HoldForm(ctx, id, []byte("sealed"), time.Minute); !ok || err != nil {
		t.Fatalf("hold in an empty store: %v, %v", ok, err)
	}
	if b, err := m.TakeForm(ctx, id); err != nil || string(b) != "sealed" {
		t.Fatalf("take = %q, %v", b, err)
	}
	if _, err := m.TakeForm(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second take: %v, want ErrNotFound", err)
	}
	_, _ = m.HoldForm(ctx, id, []byte("sealed"), time.Minute)
	now = now.Add(time.Minute)
	if _, err := m.TakeForm(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("take after the ttl: %v, want ErrNotFound", err)
	}
	if m.HeldForms() != 0 {
		t.Errorf("held %d after taking an expired form", m.HeldForms())
	}
	// A form nobody takes leaves at the next hold after its ttl.
	_, _ = m.HoldForm(ctx, id, []byte("sealed"), time.Minute)
	now = now.Add(time.Minute)
	_, _ = m.HoldForm(ctx, []byte("fedcba9876543210"), []byte("other"), time.Minute)
	if m.HeldForms() != 1 || m.forms.bytes != len("other") {
		t.Errorf("after expiry: %d forms, %d bytes; want 1, %d", m.HeldForms(), m.forms.bytes, len("other"))
	}
	// Held forms are not sessions.
	if m.Len() != 0 {
		t.Errorf("the session LRU holds %d entries", m.Len())
	}
}

func TestMemory_HeldFormsBounded(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	m, _ := NewMemory(10, Options{IdleTimeout: time.Hour, AbsoluteTimeout: 8 * time.Hour, Now: func() time.Time { return now }})
	ctx := t.Context()
	id := func(i int) []byte {
		return []byte{byte(i), byte(i >> 8), byte(i >> 16), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}
	}
	for i := range MaxHeldForms {
		if ok, _ := m.HoldForm(ctx, id(i), []byte("x"), time.Minute); !ok {
			t.Fatalf("hold %d refused", i)
		}
	}
	if ok, _ := m.HoldForm(ctx, id(MaxHeldForms), []byte("x"), time.Minute); ok {
		t.Fatal("a full store of live forms took one more")
	}
	now = now.Add(time.Minute)
	if ok, _ := m.HoldForm(ctx, id(MaxHeldForms), []byte("x"), time.Minute); !ok || m.HeldForms() != 1 {
		t.Errorf("after expiry: %v, %d forms", ok, m.HeldForms())
	}
	big := bytes.Repeat([]byte("b"), maxHeldFormSize)
	for i := range MaxHeldFormBytes / maxHeldFormSize {
		_, _ = m.HoldForm(ctx, id(2*MaxHeldForms+i), big, time.Minute)
	}
	if ok, _ := m.HoldForm(ctx, id(3*MaxHeldForms), big, time.Minute); ok {
		t.Error("the byte bound let a form through")
	}
	if _, err := m.HoldForm(ctx, id(1), append(big, 'x'), time.Minute); err == nil {
		t.Error("a form over the size bound was accepted")
	}
}

// TestRedis_HeldFormTakenOnceAcrossReplicas: a form held through one
// replica is taken through another, once; its key names only a hash of
// the ID and expires with the login.
func TestRedis_HeldFormTakenOnceAcrossReplicas(t *testing.T) {
	a, b := replicas(t)
	id := []byte("0123456789abcdef")
	if ok, err := a.HoldForm(t.Context(), id, []byte("sealed form"), testLoginTTL); !ok || err != nil {
		t.Fatalf("hold on A: %v, %v", ok, err)
	}
	keys := a.rt.keys(t)
	if len(keys) != 1 || keys[0] != a.formKey(id) || bytes.Contains([]byte(keys[0]), id) {
		t.Fatalf("keys %q, want only %s", keys, a.formKey(id))
	}
	if pttl, err := a.rt.admin.PTTL(t.Context(), keys[0]).Result(); err != nil || pttl <= testLoginTTL-time.Minute || pttl > testLoginTTL {
		t.Errorf("PTTL %s (%v), want just under %s", pttl, err, testLoginTTL)
	}
	if got, err := b.TakeForm(t.Context(), id); err != nil || string(got) != "sealed form" {
		t.Fatalf("take on B: %q, %v", got, err)
	}
	for name, s := range map[string]*redisTestStore{"A": a, "B": b} {
		if _, err := s.TakeForm(t.Context(), id); !errors.Is(err, ErrNotFound) {
			t.Errorf("second take on %s: %v, want ErrNotFound", name, err)
		}
	}
	if keys := a.rt.keys(t); len(keys) != 0 {
		t.Errorf("keys left after the take: %q", keys)
	}
}

// TestRedis_HeldFormFailsClosed: a Redis that does not answer is an
// ErrUnavailable, never "not held" or "no form".
func TestRedis_HeldFormFailsClosed(t *testing.T) {
	redistest.Require(t, redistest.Addr)
	rt := newRedisTest(t, redistest.Addr)
	cfg := rt.storeConfig()
	cfg.URL = "redis://" + newSilentServer(t) + "/0"
	cfg.LocalCache = nil
	cfg.Timeout = 100 * time.Millisecond
	ts := rt.newStore(t, newFakeClock(), cfg)
	id := []byte("0123456789abcdef")
	if ok, err := ts.HoldForm(t.Context(), id, []byte("x"), testLoginTTL); ok || !isUnavailable(err) {
		t.Errorf("hold on a silent Redis: %v, %v; want false and ErrUnavailable", ok, err)
	}
	if _, err := ts.TakeForm(t.Context(), id); !isUnavailable(err) || errors.Is(err, ErrNotFound) {
		t.Errorf("take on a silent Redis: %v; want ErrUnavailable, not ErrNotFound", err)
	}
}
