package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// loadSpec is the traffic of one phase.
type loadSpec struct {
	addr     string   // host:port of the proxy under test
	addrs    []string // when set, replicas to spread the connections over (connection i to addrs[i%len]); the Go loader only
	path     string   // request target, e.g. /app/page?x=1
	accept   string   // Accept header
	cookies  []string // "name=value", one per request in turn; none when empty
	want     int      // the status every answer should have
	conns    int
	duration time.Duration
}

// loadResult is what a loader measured.
type loadResult struct {
	Requests  uint64         // answers received
	Wrong     uint64         // answers with another status than wanted
	Errors    uint64         // requests that got no answer: connect, read, write, timeout
	Elapsed   time.Duration  // wall time of the measured load
	ReqPerSec float64        // answers per second
	P50, P99  time.Duration  // latency, write of the request to end of the answer
	Statuses  map[int]uint64 // answers by status; nil when the loader does not tell
	LoaderCPU time.Duration  // CPU time of the load generator itself
}

// loader generates the load of a phase. run returns when the phase is
// over, at most a few seconds after s.duration.
type loader interface {
	name() string
	run(ctx context.Context, s loadSpec) (loadResult, error)
}

// ioGrace is how long past the end of a phase an answer may take before
// its connection is abandoned and the request counted as an error.
const ioGrace = 5 * time.Second

// goLoader is the built-in load generator: one goroutine per keep-alive
// connection, each writing prebuilt requests and reading answers with
// http.ReadResponse, like wrk, rather than through http.Client, whose
// own cost would otherwise weigh on a two-core machine. Latencies go into
// a fixed histogram per connection, so memory does not grow with the
// number of requests.
type goLoader struct{ hz float64 }

func (goLoader) name() string { return "go" }

func (g goLoader) run(ctx context.Context, s loadSpec) (loadResult, error) {
	reqs := buildRequests(s)
	cpu0, cpuErr := cpuTicks(os.Getpid())
	start := time.Now()
	deadline := start.Add(s.duration)
	workers := make([]*worker, s.conns)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{}
		workers[i] = w
		addr := s.addr
		if len(s.addrs) > 0 {
			addr = s.addrs[i%len(s.addrs)]
		}
		wg.Go(func() { w.loop(ctx, addr, reqs, i, s.conns, deadline) })
	}
	wg.Wait()
	res := loadResult{Elapsed: time.Since(start), Statuses: map[int]uint64{}}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	var hist histogram
	for _, w := range workers {
		hist.merge(&w.hist)
		res.Errors += w.errors
		for code, n := range w.statuses {
			if n > 0 {
				res.Statuses[code] += n
			}
		}
	}
	res.Requests = hist.n
	res.Wrong = res.Requests - res.Statuses[s.want]
	res.ReqPerSec = float64(res.Requests) / res.Elapsed.Seconds()
	res.P50, res.P99 = hist.quantile(0.50), hist.quantile(0.99)
	if cpu1, err := cpuTicks(os.Getpid()); err == nil && cpuErr == nil && g.hz > 0 {
		res.LoaderCPU = time.Duration(float64(cpu1-cpu0) / g.hz * float64(time.Second))
	}
	return res, nil
}

// buildRequests returns the raw HTTP/1.1 requests of a phase, one per
// cookie (or one without a cookie).
func buildRequests(s loadSpec) [][]byte {
	head := "GET " + s.path + " HTTP/1.1\r\nHost: " + s.addr + "\r\nUser-Agent: gatehouse-bench\r\nAccept: " + s.accept + "\r\n"
	if len(s.cookies) == 0 {
		return [][]byte{[]byte(head + "\r\n")}
	}
	reqs := make([][]byte, len(s.cookies))
	for i, c := range s.cookies {
		reqs[i] = []byte(head + "Cookie: " + c + "\r\n\r\n")
	}
	return reqs
}

// worker drives one keep-alive connection. It is owned by one goroutine.
type worker struct {
	hist     histogram
	statuses [600]uint64 // by status code; 0 counts codes out of range
	errors   uint64
}

// loop sends requests until the deadline, starting at reqs[next] and
// stepping by step, so that the workers together rotate through every
// request. A failed connection is counted and dialled again.
func (w *worker) loop(ctx context.Context, addr string, reqs [][]byte, next, step int, deadline time.Time) {
	var conn net.Conn
	br := bufio.NewReaderSize(nil, 16<<10)
	drop := func() {
		w.errors++
		if conn != nil {
			conn.Close()
			conn = nil
		}
	}
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for ctx.Err() == nil {
		t0 := time.Now()
		if !t0.Before(deadline) {
			return
		}
		if conn == nil {
			c, err := dial(ctx, addr, deadline.Add(ioGrace))
			if err != nil {
				drop()
				time.Sleep(10 * time.Millisecond) // back off; refused dials return at once
				continue
			}
			conn = c
			br.Reset(conn)
		}
		next = (next + step) % len(reqs)
		if _, err := conn.Write(reqs[next]); err != nil {
			drop()
			continue
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			drop()
			continue
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			drop()
			continue
		}
		w.hist.record(time.Since(t0))
		code := resp.StatusCode
		if code < 0 || code >= len(w.statuses) {
			code = 0
		}
		w.statuses[code]++
		if resp.Close {
			conn.Close()
			conn = nil
		}
	}
}

// dial connects with a bounded wait and sets the connection's deadline;
// ending ctx moves the deadline to now, so a blocked read returns.
func dial(ctx context.Context, addr string, until time.Time) (net.Conn, error) {
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if err := c.SetDeadline(until); err != nil {
		c.Close()
		return nil, err
	}
	context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	return c, nil
}

// histogram counts latencies in nanoseconds in log-linear buckets: exact
// below 64ns, then 32 buckets per power of two, so a quantile is within
// about 3% of the true value. Its size is fixed. The zero value is an
// empty histogram; it is not safe for concurrent use.
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
}

const (
	histSub     = 32           // buckets per power of two
	histBuckets = 64 * histSub // covers every uint64
	histExact   = 2 * histSub  // values below this have a bucket each
	histBits    = 6            // log2(histExact): v>>(bits.Len64(v)-histBits) is in [histSub, histExact)
)

func histIndex(v uint64) int {
	if v < histExact {
		return int(v)
	}
	shift := bits.Len64(v) - histBits
	return shift*histSub + int(v>>shift)
}

// histValue is the middle of bucket i.
func histValue(i int) uint64 {
	if i < histExact {
		return uint64(i)
	}
	shift := i/histSub - 1
	m := uint64(i - shift*histSub)
	return m<<shift + (uint64(1)<<shift)/2
}

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[histIndex(uint64(d))]++
	h.n++
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// quantile returns the latency below which a fraction q of the recorded
// ones fall (the nearest-rank method), or 0 when nothing was recorded.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q * float64(h.n))
	if float64(rank) < q*float64(h.n) {
		rank++
	}
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(histValue(i))
		}
	}
	return time.Duration(histValue(histBuckets - 1))
}

// formatStatuses renders answers by status, e.g. "200:1234 502:3".
func formatStatuses(m map[int]uint64) string {
	var b strings.Builder
	for code := range 600 {
		if n := m[code]; n > 0 {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%d:%d", code, n)
		}
	}
	return b.String()
}
