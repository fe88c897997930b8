// Package directtest holds the scripted upstream that the direct path's
// tests and package proxy's gateway tests both drive: an upstream on
// loopback that answers with raw bytes.
package directtest

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// Upstream is an upstream on loopback that answers with raw
// bytes, so a test can send what a Go server never would (hop-by-hop
// headers, unsolicited bytes, early hints, a close without an answer),
// and records every request head it reads, by connection.
type Upstream struct {
	ln      net.Listener
	answer  func(conn, n int, head string) Reply
	mu      sync.Mutex
	heads   []string // every request head, in arrival order
	conns   int
	open    int // connections not yet closed
	wg      sync.WaitGroup
	closing chan struct{}
}

// Reply is what the scripted upstream does with a request: write now,
// then after a pause write later, closing the connection after either
// or going on to read the next request.
type Reply struct {
	Now        string
	CloseNow   bool
	Later      string
	CloseLater bool
}

// Pause is how long a Reply waits before writing Later.
const Pause = 100 * time.Millisecond

func NewUpstream(t testing.TB, answer func(conn, n int, head string) Reply) *Upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &Upstream{ln: ln, answer: answer, closing: make(chan struct{})}
	u.wg.Add(1)
	go u.accept()
	t.Cleanup(func() {
		close(u.closing)
		ln.Close()
		u.wg.Wait()
	})
	return u
}

func (u *Upstream) URL() string { return "http://" + u.ln.Addr().String() }

func (u *Upstream) accept() {
	defer u.wg.Done()
	for {
		c, err := u.ln.Accept()
		if err != nil {
			return
		}
		u.mu.Lock()
		id := u.conns
		u.conns++
		u.open++
		u.mu.Unlock()
		u.wg.Add(1)
		go u.serve(c, id)
	}
}

func (u *Upstream) serve(c net.Conn, id int) {
	defer u.wg.Done()
	defer func() {
		c.Close()
		u.mu.Lock()
		u.open--
		u.mu.Unlock()
	}()
	go func() { <-u.closing; c.Close() }()
	br := bufio.NewReader(c)
	for n := 0; ; n++ {
		var head strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" {
				break
			}
			head.WriteString(line)
		}
		u.mu.Lock()
		u.heads = append(u.heads, head.String())
		u.mu.Unlock()
		r := u.answer(id, n, head.String())
		if _, err := io.WriteString(c, r.Now); err != nil || r.CloseNow {
			return
		}
		if r.Later != "" || r.CloseLater {
			time.Sleep(Pause)
			if _, err := io.WriteString(c, r.Later); err != nil || r.CloseLater {
				return
			}
		}
	}
}

// Requests counts the request heads the upstream has read.
func (u *Upstream) Requests() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.heads)
}

func (u *Upstream) LastHead() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.heads) == 0 {
		return ""
	}
	return u.heads[len(u.heads)-1]
}

func (u *Upstream) Connections() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.conns
}

// OpenConns counts the connections the upstream has not seen closed.
func (u *Upstream) OpenConns() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.open
}

// Addr is the upstream's listening address (host:port).
func (u *Upstream) Addr() string { return u.ln.Addr().String() }
