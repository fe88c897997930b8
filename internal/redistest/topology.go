package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel is a Redis master with one replica, watched by three
// Sentinels (quorum 2), all on free loopback ports and killed when the
// test ends: what session.redis.sentinel points at in production. The
// test kills the master (Nodes[0].Kill) to see a failover.
type Sentinel struct {
	Name      string    // the master's name in Sentinel
	Addrs     []string  // the Sentinels, host:port
	Nodes     []*Server // Nodes[0] is the first master, Nodes[1] its replica
	Sentinels []*Server

	t testing.TB
}

// StartSentinel starts the master, its replica and the Sentinels, with
// down-after-milliseconds downAfter and a failover timeout of four times
// that, and waits (up to 20s) until the replica is in sync and every
// Sentinel knows the replica and the two other Sentinels, so that a
// failover can be agreed on.
func StartSentinel(t testing.TB, downAfter time.Duration) *Sentinel {
	t.Helper()
	const name = "gatehouse"
	s := &Sentinel{Name: name, t: t}
	master := newServer(t)
	replica := newServer(t)
	replica.args = append(dataArgs(replica), "--replicaof", "127.0.0.1", strconv.Itoa(master.port))
	master.args = dataArgs(master)
	s.Nodes = []*Server{master, replica}
	for _, n := range s.Nodes {
		n.Start()
		t.Cleanup(n.Kill)
	}
	for range 3 {
		sn := newServer(t)
		conf := filepath.Join(sn.dir, "sentinel.conf")
		ms := downAfter.Milliseconds()
		text := fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 2\n"+
			"sentinel down-after-milliseconds %s %d\n"+
			"sentinel failover-timeout %s %d\n"+
			"sentinel parallel-syncs %s 1\n", name, master.port, name, ms, name, 4*ms, name)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		sn.args = []string{conf, "--sentinel", "--dir", sn.dir, "--daemonize", "no"}
		sn.Start()
		t.Cleanup(sn.Kill)
		s.Sentinels = append(s.Sentinels, sn)
		s.Addrs = append(s.Addrs, sn.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	waitUntil(t, ctx, "the replica to sync and the Sentinels to know each other", func() bool {
		if info(ctx, replica.Addr, "replication")["master_link_status"] != "up" {
			return false
		}
		for _, a := range s.Addrs {
			c := redis.NewSentinelClient(&redis.Options{Addr: a})
			reps, err1 := c.Replicas(ctx, name).Result()
			sens, err2 := c.Sentinels(ctx, name).Result()
			c.Close()
			if err1 != nil || err2 != nil || len(reps) != 1 || len(sens) != 2 {
				return false
			}
		}
		return true
	})
	return s
}

// dataArgs are a data node's arguments: nothing on disk unless saved.
func dataArgs(s *Server) []string {
	return []string{"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--dir", s.dir, "--dbfilename", "dump.rdb"}
}

// MasterAddr returns the master's address as the Sentinels that answer
// agree on it, or "" while they disagree or none answers.
func (s *Sentinel) MasterAddr(ctx context.Context) string {
	var got string
	for _, a := range s.Addrs {
		c := redis.NewSentinelClient(&redis.Options{Addr: a, DialTimeout: 200 * time.Millisecond})
		r, err := c.GetMasterAddrByName(ctx, s.Name).Result()
		c.Close()
		if err != nil || len(r) != 2 {
			continue
		}
		addr := r[0] + ":" + r[1]
		if got != "" && got != addr {
			return ""
		}
		got = addr
	}
	return got
}

// WaitFailover waits (up to bound) until the Sentinels agree on a master
// other than old and that node answers as a master, and returns its
// address.
func (s *Sentinel) WaitFailover(old string, bound time.Duration) string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	var addr string
	waitUntil(s.t, ctx, "the Sentinels to promote a new master", func() bool {
		addr = s.MasterAddr(ctx)
		return addr != "" && addr != old && info(ctx, addr, "replication")["role"] == "master"
	})
	return addr
}

// Cluster is a Redis Cluster of masters with replicas each, on free
// loopback ports, created with `redis-cli --cluster create` and killed
// when the test ends. Its node timeout is short (1s), so a killed master's
// replica takes over within a few seconds.
type Cluster struct {
	Addrs []string  // every node, host:port
	Nodes []*Server // in Addrs' order

	t testing.TB
}

// StartCluster starts masters*(1+replicas) nodes, joins them into a
// cluster with the slots spread over the masters, and waits (up to 30s)
// until every node reports the cluster healthy and every replica is in
// sync.
func StartCluster(t testing.TB, masters, replicas int) *Cluster {
	t.Helper()
	cli := lookBin(t, "redis-cli")
	c := &Cluster{t: t}
	for range masters * (1 + replicas) {
		n := newServer(t)
		n.args = append(dataArgs(n), "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "1000")
		n.Start()
		t.Cleanup(n.Kill)
		c.Nodes = append(c.Nodes, n)
		c.Addrs = append(c.Addrs, n.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy(ctx)
	return c
}

// WaitHealthy waits until every running node reports cluster_state:ok,
// sees the same number of masters, and every replica's link to its
// master is up; it fails the test when ctx ends first.
func (c *Cluster) WaitHealthy(ctx context.Context) {
	c.t.Helper()
	waitUntil(c.t, ctx, "the cluster to be healthy", func() bool {
		size := ""
		for _, n := range c.Nodes {
			if n.cmd == nil {
				continue
			}
			ci := clusterInfo(ctx, n.Addr)
			if ci == nil {
				return false
			}
			if ci["cluster_state"] != "ok" || (size != "" && ci["cluster_size"] != size) {
				return false
			}
			size = ci["cluster_size"]
			if r := info(ctx, n.Addr, "replication"); r["role"] == "slave" && r["master_link_status"] != "up" {
				return false
			}
		}
		return true
	})
}

// MasterOf returns the address of the master that serves key's slot,
// as the first running node that answers CLUSTER SLOTS says, or "".
func (c *Cluster) MasterOf(ctx context.Context, key string) string {
	for _, n := range c.Nodes {
		if n.cmd == nil {
			continue
		}
		cl := redis.NewClient(&redis.Options{Addr: n.Addr, DialTimeout: 200 * time.Millisecond})
		slot, err1 := cl.ClusterKeySlot(ctx, key).Result()
		//lint:ignore SA1019 CLUSTER SHARDS needs Redis 7; CLUSTER SLOTS answers on every version the tests run against
		slots, err2 := cl.ClusterSlots(ctx).Result()
		cl.Close()
		if err1 != nil || err2 != nil {
			continue
		}
		for _, r := range slots {
			if int64(r.Start) <= slot && slot <= int64(r.End) && len(r.Nodes) > 0 {
				return r.Nodes[0].Addr
			}
		}
		return ""
	}
	return ""
}

// Node returns the node at addr, or nil.
func (c *Cluster) Node(addr string) *Server {
	for _, n := range c.Nodes {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// Masters returns the running nodes that are masters.
func (c *Cluster) Masters(ctx context.Context) []*Server {
	var out []*Server
	for _, n := range c.Nodes {
		if n.cmd != nil && info(ctx, n.Addr, "replication")["role"] == "master" {
			out = append(out, n)
		}
	}
	return out
}

// info returns one section of INFO from the server at addr as a map, or
// nil when it does not answer.
func info(ctx context.Context, addr, section string) map[string]string {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 200 * time.Millisecond,
		ReadTimeout: time.Second, MaxRetries: -1})
	defer c.Close()
	text, err := c.Info(ctx, section).Result()
	if err != nil {
		return nil
	}
	return fields(text)
}

// clusterInfo returns CLUSTER INFO from the node at addr as a map, or
// nil when it does not answer.
func clusterInfo(ctx context.Context, addr string) map[string]string {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 200 * time.Millisecond,
		ReadTimeout: time.Second, MaxRetries: -1})
	defer c.Close()
	text, err := c.ClusterInfo(ctx).Result()
	if err != nil {
		return nil
	}
	return fields(text)
}

// fields parses the "key:value" lines of INFO and CLUSTER INFO.
func fields(text string) map[string]string {
	m := map[string]string{}
	for line := range strings.SplitSeq(text, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = v
		}
	}
	return m
}

// waitUntil polls cond every 20ms until it holds, and fails the test
// when ctx ends first.
func waitUntil(t testing.TB, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("redistest: timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}
