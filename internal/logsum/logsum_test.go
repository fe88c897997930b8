package logsum

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

type lines struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lines) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }

// records returns the JSON lines written so far.
func (l *lines) records(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(l.b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		out = append(out, m)
	}
	return out
}

func newLogger(maxKeys int) (*slog.Logger, *lines) {
	out := &lines{}
	return slog.New(New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}), 10*time.Second, maxKeys)), out
}

func upstreamDown(log *slog.Logger, i int) {
	log.Warn("The application is unavailable", "request_id", fmt.Sprintf("rid%d", i), "status", 502, "method", "GET",
		"path", fmt.Sprintf("/p/%d", i), "reason", "upstream_unavailable",
		"err", fmt.Sprintf("read tcp 127.0.0.1:%d->127.0.0.1:8080: read: connection reset by peer", 40000+i%1000))
}

// TestSummary_Burst: N identical failures in one interval are one full
// line (the first, with its request ID) and one summary counting the
// other N-1; a quiet interval ends the run, and the next failure is
// written in full again.
func TestSummary_Burst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log, out := newLogger(0)
		const n = 5000
		for i := range n {
			upstreamDown(log, i)
		}
		if got := len(out.records(t)); got != 1 {
			t.Fatalf("lines during the burst: %d, want 1", got)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		recs := out.records(t)
		if len(recs) != 2 {
			t.Fatalf("lines after one interval: %d, want 2", len(recs))
		}
		if recs[0]["request_id"] != "rid0" || recs[0]["path"] != "/p/0" {
			t.Errorf("first line lost its detail: %v", recs[0])
		}
		sum := recs[1]
		if sum["msg"] != "The application is unavailable: 4,999 more in the last 10s" || sum["repeated"] != float64(n-1) ||
			sum["level"] != "WARN" || sum["reason"] != "upstream_unavailable" || sum["request_id"] != nil {
			t.Errorf("summary line: %v", sum)
		}
		time.Sleep(10 * time.Second) // quiet: the run ends without a line
		synctest.Wait()
		upstreamDown(log, n)
		if recs := out.records(t); len(recs) != 3 || recs[2]["request_id"] != fmt.Sprint("rid", n) {
			t.Errorf("after a quiet interval: %d lines, last %v; want the new failure in full", len(recs), recs[len(recs)-1])
		}
	})
}

// TestSummary_Outage: a failure that keeps coming is one full line and
// then one line per interval.
func TestSummary_Outage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log, out := newLogger(0)
		for sec := range 30 {
			for i := range 100 {
				upstreamDown(log, sec*100+i)
			}
			time.Sleep(time.Second)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		recs := out.records(t)
		var counted int
		for _, r := range recs[1:] {
			counted += int(r["repeated"].(float64))
		}
		if len(recs) != 1+3 || counted != 3000-1 {
			t.Errorf("30s of 100 failures a second: %d lines counting %d more, want 1+3 lines counting 2999", len(recs), counted)
		}
	})
}

// TestSummary_DistinctFailures: different failures are each written;
// lines below WARN are never summarised.
func TestSummary_DistinctFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log, out := newLogger(0)
		log.Warn("Session store unavailable", "request_id", "a", "reason", "store_unavailable", "err", errors.New("redis: connection pool timeout"))
		log.Warn("Session store unavailable", "request_id", "b", "reason", "store_unavailable", "err", errors.New("dial tcp 127.0.0.1:6379: connect: connection refused"))
		log.Warn("The application is unavailable", "request_id", "c", "reason", "upstream_unavailable")
		log.With("route", "api").Warn("The application is unavailable", "request_id", "d", "reason", "upstream_unavailable")
		for i := range 50 {
			log.Info("access denied", "request_id", i)
		}
		if got := len(out.records(t)); got != 4+50 {
			t.Errorf("lines: %d, want 4 distinct warnings and 50 infos", got)
		}
	})
}

// TestSummary_BoundedKeys: beyond maxKeys distinct warnings, new kinds
// share one run: memory stays bounded and so does the log.
func TestSummary_BoundedKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log, out := newLogger(3)
		for i := range 10 {
			for range 5 {
				log.Warn(fmt.Sprint("failure ", i))
			}
		}
		if got := len(out.records(t)); got != 3+1 {
			t.Errorf("lines: %d, want 3 tracked kinds and the first of the others", got)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		var found bool
		for _, r := range out.records(t) {
			found = found || r["msg"] == "warnings of other kinds: 34 more in the last 10s"
		}
		if !found {
			t.Errorf("no overflow summary counting 34 more:\n%s", out.b.String())
		}
	})
}
