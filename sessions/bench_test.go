package sessions

import (
	"encoding/binary"
	"flag"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// The benchmarks use the real clock, as production does, so Get touches
// each session about once a second.
func newBenchStore(b *testing.B, maxSessions int) *Memory {
	b.Helper()
	m, err := NewMemory(maxSessions, Options{IdleTimeout: time.Hour, AbsoluteTimeout: 24 * time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func benchSessions(b *testing.B, m *Memory, n int) []ID {
	b.Helper()
	ids := make([]ID, n)
	for i := range ids {
		s := &Session{ID: NewID(), Subject: "sub", IdPSessionID: "sid", Created: time.Now()}
		if err := m.Create(b.Context(), s); err != nil {
			b.Fatal(err)
		}
		ids[i] = s.ID
	}
	return ids
}

// BenchmarkMemory_GetHot: every goroutine reads the same session, the
// worst case for lock contention.
func BenchmarkMemory_GetHot(b *testing.B) {
	m := newBenchStore(b, 100000)
	id := benchSessions(b, m, 1)[0]
	ctx := b.Context()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.Get(ctx, id); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkMemory_GetRotating: 10,000 live sessions, each goroutine
// walking them in its own random order, so the shards share the load.
func BenchmarkMemory_GetRotating(b *testing.B) {
	const n = 10000
	m := newBenchStore(b, 100000)
	ids := benchSessions(b, m, n)
	ctx := b.Context()
	var seed atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		order := rand.New(rand.NewPCG(seed.Add(1), 0)).Perm(n)
		i := 0
		for pb.Next() {
			if _, err := m.Get(ctx, ids[order[i]]); err != nil {
				b.Error(err)
				return
			}
			if i++; i == n {
				i = 0
			}
		}
	})
}

// BenchmarkMemory_Create stores new sessions into a store of the default
// size, which fills and then evicts one session per Create, keeping both
// indexes up to date. The IDs come
// from a counter, so the benchmark measures the store, not crypto/rand;
// the leading byte still spreads them over the shards.
func BenchmarkMemory_Create(b *testing.B) {
	m := newBenchStore(b, 100000)
	ctx := b.Context()
	now := time.Now()
	// 4,096 users with 16 logins each in the store at a time.
	subs, sids := make([]string, 1<<12), make([]string, 1<<16)
	for i := range subs {
		subs[i] = "user-" + strconv.Itoa(i)
	}
	for i := range sids {
		sids[i] = "idp-session-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		var id ID
		binary.BigEndian.PutUint64(id[1:], uint64(i))
		id[0] = byte(i)
		s := &Session{ID: id, Subject: subs[i%len(subs)], IdPSessionID: sids[i%len(sids)], Created: now}
		if err := m.Create(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCodec_SealID(b *testing.B) {
	c := newTestCodec(b, testCookie, "session", newSecret(), newSecret())
	id := NewID()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.SealID(id); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCodec_OpenID measures both paths: "repeat" opens one value over
// and over (after the first time, OpenID's cache of opened values answers
// it); "distinct" cycles through more values than that cache holds, so
// each is decoded, MAC-checked and decrypted; "previous key" is distinct
// values sealed with the second secret, after a rotation.
func BenchmarkCodec_OpenID(b *testing.B) {
	current, previous := newSecret(), newSecret()
	c := newTestCodec(b, testCookie, "session", current, previous)
	seal := func() string {
		v, err := c.SealID(NewID())
		if err != nil {
			b.Fatal(err)
		}
		return v
	}
	b.Run("repeat", func(b *testing.B) {
		v := seal()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.OpenID(v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("distinct", func(b *testing.B) {
		values := make([]string, 1<<16)
		for i := range values {
			values[i] = seal()
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := c.OpenID(values[i]); err != nil {
				b.Fatal(err)
			}
			i = (i + 1) & (len(values) - 1)
		}
	})
	b.Run("previous key", func(b *testing.B) {
		// Values sealed with the second secret: the first fails its MAC.
		old := newTestCodec(b, testCookie, "session", previous)
		values := make([]string, 1<<16)
		for i := range values {
			values[i], _ = old.SealID(NewID())
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := c.OpenID(values[i]); err != nil {
				b.Fatal(err)
			}
			i = (i + 1) & (len(values) - 1)
		}
	})
}

var bytesPerSessionN = flag.Int("sessions", 100000, "sessions for BenchmarkMemory_BytesPerSession")
