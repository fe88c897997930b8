package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisTopo is the Redis that -redis-mode starts for a run, on loopback
// ports, in a temporary directory, and stops at the end: a single
// redis-server (the baseline), and a Sentinel-managed master with a
// replica and three Sentinels, or a Cluster of three masters with a
// replica each.
type redisTopo struct {
	single   string   // host:port of the single redis-server
	master   string   // Sentinel's name for the master ("" for a cluster)
	addrs    []string // the Sentinels, or the cluster's nodes
	dir      string
	procs    []*exec.Cmd
	redisCLI string
}

// startRedisTopo starts the servers of mode (sentinel or cluster) and
// waits, at most 30s, until they serve.
func startRedisTopo(mode string) (t *redisTopo, err error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("-redis-mode %s: redis-server is not on PATH (install the redis-server package)", mode)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, fmt.Errorf("-redis-mode %s: redis-cli is not on PATH (install the redis-tools package)", mode)
	}
	dir, err := os.MkdirTemp("", "gatehouse-bench-redis-")
	if err != nil {
		return nil, err
	}
	t = &redisTopo{dir: dir, redisCLI: cli}
	defer func() {
		if err != nil {
			t.stop()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if t.single, err = t.start(ctx, bin, "single"); err != nil {
		return t, err
	}
	switch mode {
	case "sentinel":
		err = t.startSentinel(ctx, bin)
	case "cluster":
		err = t.startCluster(ctx, bin)
	default:
		err = fmt.Errorf("-redis-mode: sentinel or cluster (got %q)", mode)
	}
	return t, err
}

// start runs one redis-server (args after --port and --bind; a leading
// configuration file goes first) in its own directory under name, and
// waits until it answers PING.
func (t *redisTopo) start(ctx context.Context, bin, name string, args ...string) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := filepath.Join(t.dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	argv := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir, "--daemonize", "no"}
	if len(args) > 0 && !strings.HasPrefix(args[0], "--") {
		argv = append([]string{args[0]}, append(argv, args[1:]...)...)
	} else {
		argv = append(argv, append([]string{"--save", "", "--appendonly", "no"}, args...)...)
	}
	cmd := exec.Command(bin, argv...)
	logf, err := os.Create(filepath.Join(dir, "redis.log"))
	if err != nil {
		return "", err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start redis-server %s: %w", name, err)
	}
	t.procs = append(t.procs, cmd)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for !pings(ctx, addr) {
		if ctx.Err() != nil {
			return "", fmt.Errorf("redis-server %s on %s did not answer (log in %s)", name, addr, dir)
		}
		time.Sleep(10 * time.Millisecond) // polling a child process's start-up
	}
	return addr, nil
}

func (t *redisTopo) startSentinel(ctx context.Context, bin string) error {
	master, err := t.start(ctx, bin, "master")
	if err != nil {
		return err
	}
	_, mport, _ := net.SplitHostPort(master)
	if _, err := t.start(ctx, bin, "replica", "--replicaof", "127.0.0.1", mport); err != nil {
		return err
	}
	t.master = "gatehouse"
	for i := range 3 {
		name := fmt.Sprintf("sentinel%d", i)
		conf := filepath.Join(t.dir, name+".conf")
		text := fmt.Sprintf("sentinel monitor gatehouse 127.0.0.1 %s 2\nsentinel down-after-milliseconds gatehouse 1000\n", mport)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			return err
		}
		addr, err := t.start(ctx, bin, name, conf, "--sentinel")
		if err != nil {
			return err
		}
		t.addrs = append(t.addrs, addr)
	}
	return nil
}

func (t *redisTopo) startCluster(ctx context.Context, bin string) error {
	for i := range 6 {
		addr, err := t.start(ctx, bin, fmt.Sprintf("node%d", i),
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000")
		if err != nil {
			return err
		}
		t.addrs = append(t.addrs, addr)
	}
	args := append([]string{"--cluster", "create"}, t.addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, t.redisCLI, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("redis-cli --cluster create: %w\n%s", err, out)
	}
	for _, a := range t.addrs {
		for {
			c := redis.NewClient(&redis.Options{Addr: a})
			text, _ := c.ClusterInfo(ctx).Result()
			c.Close()
			if strings.Contains(text, "cluster_state:ok") {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("cluster node %s did not report cluster_state:ok", a)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// stop kills every server it started and removes their directory.
func (t *redisTopo) stop() {
	for _, c := range t.procs {
		_ = c.Process.Kill()
		_ = c.Wait()
	}
	t.procs = nil
	_ = os.RemoveAll(t.dir)
}

// pings reports whether the Redis at addr answers PING.
func pings(ctx context.Context, addr string) bool {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	return c.Ping(ctx).Err() == nil
}
