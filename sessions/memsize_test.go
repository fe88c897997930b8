package sessions

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// BenchmarkMemory_BytesPerSession fills a memory store with sessions
// shaped like real ones and reports the heap each costs beyond its tokens'
// own bytes (which depend on the provider). Run it alone:
//
//	go test ./sessions -run=^$ -bench=BytesPerSession -benchtime=1x -sessions=1000000
func BenchmarkMemory_BytesPerSession(b *testing.B) {
	n := *bytesPerSessionN
	token := func(i int, kind string) string { // a JWT-sized token, unique per session
		return fmt.Sprintf("%s.%08d.", kind, i) + strings.Repeat("x", 900)
	}
	for b.Loop() {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		m, err := NewMemory(2*n, Options{IdleTimeout: time.Hour, AbsoluteTimeout: 8 * time.Hour}) // room: shards fill unevenly
		if err != nil {
			b.Fatal(err)
		}
		tokenBytes := 0
		now := time.Now()
		for i := range n {
			s := &Session{
				ID: NewID(), Issuer: "https://sso.example.com/realms/main",
				Subject: fmt.Sprintf("f3c1e0b2-8d4a-4c55-9e1b-%012d", i), User: fmt.Sprintf("user%d", i),
				Email: fmt.Sprintf("user%d@example.com", i), EmailVerified: true,
				Name: fmt.Sprintf("User %d", i), PreferredUsername: fmt.Sprintf("user%d", i),
				Groups: []string{"staff", "engineering"}, IdPSessionID: fmt.Sprintf("sid-%d", i),
				IDToken: token(i, "id"), AccessToken: token(i, "at"), RefreshToken: token(i, "rt"),
				AccessExpiry: now.Add(10 * time.Minute), Created: now,
				ClientIP: "192.0.2.7", UserAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36",
			}
			tokenBytes += len(s.IDToken) + len(s.AccessToken) + len(s.RefreshToken)
			_ = m.Create(context.Background(), s)
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		total := float64(after.HeapAlloc) - float64(before.HeapAlloc)
		b.ReportMetric(total/float64(n), "heap-B/session")
		b.ReportMetric((total-float64(tokenBytes))/float64(n), "B/session-beyond-tokens")
		if m.Len() != n {
			b.Fatalf("store holds %d of %d", m.Len(), n)
		}
		runtime.KeepAlive(m)
	}
}
