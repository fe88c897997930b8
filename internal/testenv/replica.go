package testenv

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/proxy"
)

// Replica is a second gatehouse of an Env, as another replica of one
// Deployment: built from the same *config.Config (cookie secret, identity
// provider, upstream, session store settings), on the same clock, on its
// own httptest server and with its own gateway, session store and logs.
// Replicas share sessions only through a shared store (session.store:
// redis); with the memory store each has its own.
//
// Both servers listen on 127.0.0.1, and cookies are scoped by host, not
// port (RFC 6265 §8.5), so one Browser's cookie jar sends the session
// cookie to both: use Browser to aim it at the replica. Redirects that
// name the external URL (login, logout) lead back to the Env's server.
type Replica struct {
	URL     string // e.g. http://127.0.0.1:40124
	Server  *httptest.Server
	Gateway *proxy.Gateway
	Logs    *LogBuffer
	view    *Env // the replica seen as an Env, for Browsers
}

// Replica starts a replica of the environment. Its gateway runs (Run:
// discovery and the store's invalidation listener) until the test ends;
// then its server stops and its store is closed. It uses the default
// upstream transport, not Options.Transport. Upstream requests are
// recorded on e (e.Requests, e.LastRequest).
func (e *Env) Replica() *Replica {
	e.T.Helper()
	logs := &LogBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	gw, err := proxy.New(e.Config, proxy.Options{Logger: logger, Now: e.Clock.Now})
	if err != nil {
		e.T.Fatalf("replica gateway: %v", err)
	}
	runGateway(e.T, gw)
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = gw.Server()
	srv.Config.Addr = ""
	srv.Start()
	e.T.Cleanup(srv.Close) // before the store closes (cleanups run last first)
	r := &Replica{URL: "http://" + srv.Listener.Addr().String(), Server: srv, Gateway: gw, Logs: logs}
	r.view = &Env{T: e.T, IdP: e.IdP, Upstream: e.Upstream, Server: srv, Gateway: gw,
		Config: e.Config, Clock: e.Clock, URL: r.URL, Logs: logs}
	return r
}

// Browser returns b aimed at the replica: the same cookie jar and client,
// with paths ("/x") resolved against the replica's URL.
func (r *Replica) Browser(b *Browser) *Browser {
	return &Browser{env: r.view, Jar: b.Jar, Client: b.Client}
}

// NewBrowser returns a browser with an empty cookie jar, aimed at the
// replica.
func (r *Replica) NewBrowser() *Browser { return r.view.NewBrowser() }

// RunGateway runs the environment's gateway in the background, as main
// does (Gateway.Run: discovery, and the session store's sweeper or
// invalidation listener), until the test ends; then it closes the store
// if it has a Close method. New does not run it: the memory store works
// without, but the redis store uses its local cache only while running.
func (e *Env) RunGateway() { runGateway(e.T, e.Gateway) }

func runGateway(t testing.TB, gw *proxy.Gateway) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		gw.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if c, ok := gw.Store.(io.Closer); ok {
			_ = c.Close()
		}
	})
}

// RedisAddr is the redis-server tests share; CI starts it.
const RedisAddr = "127.0.0.1:6379"

// RequireRedis skips the test when no Redis answers at addr, unless the
// CI environment variable is set: there a missing Redis is a failure.
func RequireRedis(t testing.TB, addr string) {
	t.Helper()
	if err := PingRedis(addr, time.Second); err != nil {
		msg := fmt.Sprintf("no redis-server at %s (%v): start one with `redis-server --port 6379`", addr, err)
		if os.Getenv("CI") == "" {
			t.Skip(msg + "; skipping (set CI to make this a failure)")
		}
		t.Fatal(msg)
	}
}

// PingRedis sends PING to addr over a raw connection and expects +PONG.
func PingRedis(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// RedisKeyPrefix returns a random key prefix for one test's sessions
// (gatehouse-test-<hex>:) on the Redis at addr, and deletes every key
// under it when the test ends.
func RedisKeyPrefix(t testing.TB, addr string) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "gatehouse-test-" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		if err := DeleteRedisKeys(addr, prefix); err != nil {
			t.Logf("delete test keys under %s: %v", prefix, err)
		}
	})
	return prefix
}

// DeleteRedisKeys deletes every key under prefix (SCAN, then UNLINK).
func DeleteRedisKeys(addr, prefix string) error {
	keys, err := RedisKeys(addr, prefix)
	if err != nil || len(keys) == 0 {
		return err
	}
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < len(keys); i += 1000 {
		if err := c.Unlink(ctx, keys[i:min(i+1000, len(keys))]...).Err(); err != nil {
			return err
		}
	}
	return nil
}

// RedisKeys returns the keys under prefix (SCAN).
func RedisKeys(addr, prefix string) ([]string, error) {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var keys []string
	it := c.Scan(ctx, 0, globEscape(prefix)+"*", 1000).Iterator()
	for it.Next(ctx) {
		keys = append(keys, it.Val())
	}
	return keys, it.Err()
}

// globEscape quotes the characters SCAN's MATCH treats specially.
func globEscape(s string) string {
	var out []byte
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			out = append(out, '\\')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// RedisServer is a redis-server a test owns, on a free loopback port,
// keeping nothing on disk: the test kills and restarts it to see outages.
type RedisServer struct {
	Addr string // 127.0.0.1:<port>
	URL  string // redis://127.0.0.1:<port>/0

	t    testing.TB
	bin  string
	port int
	log  string
	cmd  *exec.Cmd
}

// StartRedis starts a redis-server for the test and waits until it
// answers; it is killed when the test ends. Without a redis-server binary
// the test is skipped, unless CI is set.
func StartRedis(t testing.TB) *RedisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("redis-server not installed; skipping (set CI to make this a failure)")
		}
		t.Fatal("redis-server not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s := &RedisServer{t: t, bin: bin, port: port, log: filepath.Join(t.TempDir(), "redis.log")}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.URL = "redis://" + s.Addr + "/0"
	s.Start()
	t.Cleanup(s.Kill)
	return s
}

// Start runs the server (again) on its port and waits until it answers.
func (s *RedisServer) Start() {
	s.t.Helper()
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(s.bin, "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no")
	cmd.Stdout, cmd.Stderr = logf, logf // files: exec starts no copying goroutines
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for PingRedis(s.Addr, 100*time.Millisecond) != nil {
		if time.Now().After(deadline) {
			s.Kill()
			out, _ := os.ReadFile(s.log)
			s.t.Fatalf("redis-server on %s did not answer within 10s:\n%s", s.Addr, out)
		}
		time.Sleep(5 * time.Millisecond) // polling a child process's start-up
	}
}

// Kill stops the server by PID with SIGKILL (no shutdown work) and reaps
// it.
func (s *RedisServer) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}
