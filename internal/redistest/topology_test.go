package redistest

import (
	"context"
	"testing"
	"time"
)

// The topologies come up healthy, and a killed master is replaced: the
// proxy tests rely on both.
func TestStartSentinel_Failover(t *testing.T) {
	start := time.Now()
	s := StartSentinel(t, 500*time.Millisecond)
	ctx := context.Background()
	first := s.MasterAddr(ctx)
	if first != s.Nodes[0].Addr {
		t.Fatalf("Sentinels name master %q, want %q", first, s.Nodes[0].Addr)
	}
	t.Logf("sentinel setup took %v", time.Since(start))
	killed := time.Now()
	s.Nodes[0].Kill()
	if got := s.WaitFailover(first, 15*time.Second); got != s.Nodes[1].Addr {
		t.Fatalf("new master %q, want the replica %q", got, s.Nodes[1].Addr)
	}
	t.Logf("failover took %v after the kill", time.Since(killed))
}

func TestStartCluster_Healthy(t *testing.T) {
	start := time.Now()
	c := StartCluster(t, 3, 1)
	ctx := context.Background()
	if n := len(c.Masters(ctx)); n != 3 {
		t.Fatalf("%d masters, want 3", n)
	}
	if c.MasterOf(ctx, "a") == "" || c.MasterOf(ctx, "a") == c.MasterOf(ctx, "b") && c.MasterOf(ctx, "b") == c.MasterOf(ctx, "c") && c.MasterOf(ctx, "c") == c.MasterOf(ctx, "d") {
		t.Fatal("MasterOf finds no master, or one master for keys of four slots")
	}
	t.Logf("cluster setup took %v", time.Since(start))
}
