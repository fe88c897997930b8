// Package redistest gives tests a real redis-server: the shared one on
// 127.0.0.1:6379 (CI starts it), a key prefix of a test's own that is
// deleted when it ends, and servers a test owns and kills to see outages.
// Without Redis a test is skipped, unless the CI environment variable is
// set: there it fails.
package redistest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Addr is the redis-server tests share; CI starts it.
const Addr = "127.0.0.1:6379"

// Require skips the test when no Redis answers at addr, unless the
// CI environment variable is set: there a missing Redis is a failure.
func Require(t testing.TB, addr string) {
	t.Helper()
	if err := Ping(addr, time.Second); err != nil {
		msg := fmt.Sprintf("no redis-server at %s (%v): start one with `redis-server --port 6379`", addr, err)
		if os.Getenv("CI") == "" {
			t.Skip(msg + "; skipping (set CI to make this a failure)")
		}
		t.Fatal(msg)
	}
}

// Ping sends PING to addr over a raw connection and expects +PONG.
func Ping(addr string, timeout time.Duration) error {
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

// KeyPrefix returns a random key prefix for one test's sessions
// (gatehouse-test-<hex>:) on the Redis at addr, and deletes every key
// under it when the test ends.
func KeyPrefix(t testing.TB, addr string) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "gatehouse-test-" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		if err := DeleteKeys(addr, prefix); err != nil {
			t.Logf("delete test keys under %s: %v", prefix, err)
		}
	})
	return prefix
}

// DeleteKeys deletes every key under prefix (SCAN, then UNLINK).
func DeleteKeys(addr, prefix string) error {
	keys, err := Keys(addr, prefix)
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

// Keys returns the keys under prefix (SCAN).
func Keys(addr, prefix string) ([]string, error) {
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

// Server is a redis-server a test owns, on a free loopback port: the
// test kills and restarts it, or pauses and resumes it, to see outages.
// It keeps nothing on disk unless the test calls Save: then a restart
// loads what was saved, in the test's temporary directory.
type Server struct {
	Addr string // 127.0.0.1:<port>
	URL  string // redis://127.0.0.1:<port>/0

	t      testing.TB
	bin    string
	port   int
	dir    string // the server's working directory: its dump file
	log    string
	cmd    *exec.Cmd
	paused bool
	// args are the server's arguments after --port and --bind; nil: a
	// plain server that keeps nothing on disk unless saved.
	args []string
}

// Start starts a redis-server for the test and waits until it
// answers; it is killed when the test ends. Without a redis-server binary
// the test is skipped, unless CI is set.
func Start(t testing.TB) *Server {
	t.Helper()
	s := newServer(t)
	s.Start()
	t.Cleanup(s.Kill)
	return s
}

// newServer picks a free loopback port and a temporary directory for a
// server, and starts nothing.
func newServer(t testing.TB) *Server {
	t.Helper()
	bin := lookBin(t, "redis-server")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	s := &Server{t: t, bin: bin, port: port, dir: dir, log: filepath.Join(dir, "redis.log")}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.URL = "redis://" + s.Addr + "/0"
	return s
}

// lookBin finds a Redis tool, or skips the test without it (fails under CI).
func lookBin(t testing.TB, name string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip(name + " not installed; skipping (set CI to make this a failure)")
		}
		t.Fatal(name + " not installed")
	}
	return bin
}

// Start runs the server (again) on its port and waits until it answers.
func (s *Server) Start() {
	s.t.Helper()
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	defer logf.Close()
	args := s.args
	if args == nil {
		args = []string{"--save", "", "--appendonly", "no", "--daemonize", "no",
			"--dir", s.dir, "--dbfilename", "dump.rdb"}
	}
	if len(args) > 0 && !strings.HasPrefix(args[0], "--") {
		// A configuration file comes first (a Sentinel's must).
		args = append([]string{args[0], "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1"}, args[1:]...)
	} else {
		args = append([]string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1"}, args...)
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf // files: exec starts no copying goroutines
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for Ping(s.Addr, 100*time.Millisecond) != nil {
		if time.Now().After(deadline) {
			s.Kill()
			out, _ := os.ReadFile(s.log)
			s.t.Fatalf("redis-server on %s did not answer within 10s:\n%s", s.Addr, out)
		}
		time.Sleep(5 * time.Millisecond) // polling a child process's start-up
	}
}

// Kill stops the server by PID with SIGKILL (no shutdown work) and reaps
// it; a paused server is killed too.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd, s.paused = nil, false
}

// Pause stops the server by PID with SIGSTOP: it keeps its connections
// and its data but answers nothing, as a Redis that stalls (a long fork,
// a swapped-out host, a network that drops without a reset) does.
// Commands sent meanwhile wait in its socket buffers and run when it is
// resumed.
func (s *Server) Pause() {
	s.t.Helper()
	if s.cmd == nil {
		s.t.Fatal("redistest: Pause of a server that is not running")
	}
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		s.t.Fatalf("redistest: SIGSTOP: %v", err)
	}
	s.paused = true
}

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() {
	s.t.Helper()
	if s.cmd == nil || !s.paused {
		return
	}
	if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		s.t.Fatalf("redistest: SIGCONT: %v", err)
	}
	s.paused = false
}

// Save writes the server's data to its dump file (SAVE), so that the next
// Start loads it: a Kill then Start is a restart that keeps the data, as
// a Redis with persistence does.
func (s *Server) Save() {
	s.t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Save(ctx).Err(); err != nil {
		s.t.Fatalf("redistest: SAVE: %v", err)
	}
}

// WaitFor polls cond every millisecond until it holds, and fails the test
// if it does not within bound. It returns how long it took: the tests of
// coherence between replicas measure a revocation's delay with it.
func WaitFor(t testing.TB, what string, bound time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Since(start) > bound {
			t.Fatalf("timed out after %v waiting for %s", bound, what)
		}
		<-tick.C
	}
	return time.Since(start)
}
