package sessions

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
)

// TestRedis_NoKeysLeft creates 50,000 sessions and ends them every way
// (Delete, DeleteByIdPSession, DeleteBySubject, absolute and idle expiry
// found by Get), then counts the keys under the prefix: none may remain,
// session or index.
func TestRedis_NoKeysLeft(t *testing.T) {
	if testing.Short() {
		t.Skip("50,000 sessions")
	}
	const total, subjects, workers = 50000, 5000, 16
	rt := newRedisTest(t, redistest.Addr)
	clock := newFakeClock()
	cfg := rt.storeConfig()
	cfg.Timeout = 5 * time.Second // the load, not the timeout, is under test (-race on small machines)
	a := rt.newStore(t, clock, cfg)
	start := time.Now()
	ids := make([]ID, total)
	parallel(t, total, workers, func(i int) error {
		s := &Session{ID: NewID(), Subject: fmt.Sprint("user-", i%subjects), IdPSessionID: fmt.Sprint("sid-", i),
			AccessToken: "access", Created: clock.Now()}
		ids[i] = s.ID
		return a.Create(t.Context(), s)
	})
	if n := a.Len(); n != total {
		t.Fatalf("Len after creating %d = %d", total, n)
	}
	t.Logf("created %d sessions in %v", total, time.Since(start))

	start = time.Now()
	// A tenth (subjects ending in 0) are logged out by subject; of the
	// rest, a quarter each by Delete and by sid, a quarter stays active
	// until its absolute limit, and a quarter goes idle.
	group := func(i int) int {
		if i%subjects%10 == 0 {
			return -1
		}
		return i % 4
	}
	parallel(t, subjects/10, workers, func(i int) error {
		_, err := a.DeleteBySubject(t.Context(), fmt.Sprint("user-", i*10))
		return err
	})
	parallel(t, total, workers, func(i int) error {
		var err error
		switch group(i) {
		case 0:
			err = a.Delete(t.Context(), ids[i])
		case 1:
			_, err = a.DeleteByIdPSession(t.Context(), fmt.Sprint("sid-", i))
		}
		return err
	})
	expire := func(g int, want Limit) {
		parallel(t, total, workers, func(i int) error {
			if group(i) != g {
				return nil
			}
			var exp *ExpiredError
			if _, err := a.Get(t.Context(), ids[i]); !errors.As(err, &exp) || exp.Limit != want {
				return fmt.Errorf("Get(session %d) past its %s limit = %v", i, want, err)
			}
			return nil
		})
	}
	clock.Advance(testIdle - time.Minute)
	parallel(t, total, workers, func(i int) error {
		if group(i) != 2 {
			return nil
		}
		_, err := a.Get(t.Context(), ids[i]) // activity
		return err
	})
	clock.Advance(2 * time.Minute)
	expire(3, LimitIdle)
	clock.Advance(testAbsolute)
	expire(2, LimitAbsolute)
	t.Logf("ended them in %v", time.Since(start))
	if keys := rt.keys(t); len(keys) != 0 {
		t.Errorf("%d keys left under the prefix, e.g. %v", len(keys), keys[:min(5, len(keys))])
	}
	if n := a.Len(); n != 0 {
		t.Errorf("Len = %d, want 0", n)
	}
	want := map[int]int{}
	for i := range total {
		want[group(i)]++
	}
	if idle, abs := a.ends.count("idle"), a.ends.count("absolute"); idle != want[3] || abs != want[2] {
		t.Errorf("OnEnd: %d idle, %d absolute; want %d, %d", idle, abs, want[3], want[2])
	}
}

// parallel runs f(0..n-1) on workers goroutines and fails t on the first
// error.
func parallel(t *testing.T, n, workers int, f func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}
