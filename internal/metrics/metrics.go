// Package metrics holds gatehouse's Prometheus metrics. Every name starts
// with gatehouse_, durations are _seconds histograms, counters end in
// _total, and no label carries a user, a path or a session: label values
// come from small fixed sets (outcomes, reasons) or from the
// configuration (route names), so cardinality stays bounded.
//
// A nil *Metrics is valid and records nothing, so code paths need no
// checks when metrics are off.
package metrics

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Outcomes of a request, the values of the outcome label.
const (
	Proxied         = "proxied"        // sent to the upstream with an identity
	Public          = "public"         // sent to the upstream without login (public path)
	LoginRedirect   = "login_redirect" // 302 to the login
	Unauthenticated = "401"            // 401 for an API client
	Forbidden       = "403"            // signed in, not allowed
	NotFound        = "404"            // no route
	BadRequest      = "400"            // path refused
	StoreDown       = "503"            // session store unavailable
	InternalError   = "500"            // gatehouse could not check the session (an error of no known kind)
	UpstreamError   = "5xx"            // 502/504 from gatehouse, or a 5xx from the upstream
	SlowBody        = "408"            // request body too slow (server.read_body_timeout)
	FAAllowed       = "forward_auth_allowed"
)

// Metrics is the registry and gatehouse's collectors. Safe for concurrent
// use.
type Metrics struct {
	reg        *prometheus.Registry
	requests   *prometheus.CounterVec
	upstream   *prometheus.HistogramVec
	overhead   prometheus.Histogram
	logins     *prometheus.CounterVec
	logouts    *prometheus.CounterVec
	refreshes  *prometheus.CounterVec
	idpSeconds *prometheus.HistogramVec
	idpErrors  *prometheus.CounterVec
	redisErrs  prometheus.Counter
	revokes    *prometheus.CounterVec
	newDevices prometheus.Counter
	binding    *prometheus.CounterVec
}

// New registers gatehouse's metrics, plus the Go runtime and process
// collectors; activeSessions reports the store's size.
func New(activeSessions func() float64) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_requests_total", Help: "Requests by route and outcome.",
		}, []string{"route", "outcome"}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gatehouse_upstream_duration_seconds", Help: "Time from sending a request upstream to its response headers.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"route"}),
		overhead: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gatehouse_overhead_seconds", Help: "gatehouse's own work on a proxied request before it goes upstream (headers, cookie, session, policy).",
			Buckets: prometheus.ExponentialBuckets(0.000001, 3, 12),
		}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_logins_total", Help: "Logins by result and, for failures, reason.",
		}, []string{"result", "reason"}),
		logouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_logouts_total", Help: "Ended sessions by reason: user, backchannel, idle, absolute, evicted, refresh_rejected, admin.",
		}, []string{"reason"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_refreshes_total", Help: "Token refreshes by result: success, error (provider unreachable), rejected.",
		}, []string{"result"}),
		idpSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gatehouse_idp_request_duration_seconds", Help: "Calls to the identity provider by operation.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
		}, []string{"op"}),
		idpErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_idp_errors_total", Help: "Failed calls to the identity provider by operation.",
		}, []string{"op"}),
		redisErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_redis_errors_total", Help: "Failed Redis commands.",
		}),
		revokes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_revocation_retries_total",
			Help: "Background retries of revocations (sign-out, back-channel logout, admin revoke) the session store could not do at once, by outcome: success, error (will retry), gave_up, dropped (not queued), abandoned (at shutdown).",
		}, []string{"outcome"}),
		newDevices: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_new_device_logins_total",
			Help: "Sign-ins from a browser that had not signed in as that user before (session.new_device).",
		}),
		binding: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_device_binding_events_total",
			Help: "Device binding (session.device_binding) events: bound (a browser bound its session; reason empty, or why registration was refused), refresh (success, ended, or why a refresh was refused), violation (a bound session refused: missing, invalid or stale bound cookie; unbound under require).",
		}, []string{"event", "reason"}),
	}
	reg.MustRegister(m.requests, m.upstream, m.overhead, m.logins, m.logouts, m.refreshes, m.idpSeconds, m.idpErrors, m.redisErrs, m.revokes, m.newDevices, m.binding,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if activeSessions != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatehouse_active_sessions", Help: "Sessions in the store. For redis: the session keys counted in Redis with SCAN, at most once per recount interval (default 10s) and kept from the last count that worked while Redis fails.",
		}, activeSessions))
	}
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry exposes the registry (tests gather from it).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Route holds one route's counters, resolved once so the hot path only
// increments.
type Route struct {
	m       *Metrics
	name    string
	byOut   map[string]prometheus.Counter
	latency prometheus.Observer
}

var outcomes = []string{Proxied, Public, LoginRedirect, Unauthenticated, Forbidden, NotFound, BadRequest, StoreDown, InternalError, UpstreamError, SlowBody, FAAllowed}

// Route returns the counters of a route (by its configured name).
func (m *Metrics) Route(name string) *Route {
	if m == nil {
		return nil
	}
	r := &Route{m: m, name: name, byOut: map[string]prometheus.Counter{}, latency: m.upstream.WithLabelValues(name)}
	for _, o := range outcomes {
		r.byOut[o] = m.requests.WithLabelValues(name, o)
	}
	return r
}

// Count records one request's outcome.
func (r *Route) Count(outcome string) {
	if r == nil {
		return
	}
	if c, ok := r.byOut[outcome]; ok {
		c.Inc()
	}
}

// Upstream records an upstream round trip.
func (r *Route) Upstream(d time.Duration) {
	if r != nil {
		r.latency.Observe(d.Seconds())
	}
}

// Overhead records gatehouse's own time on a proxied request.
func (m *Metrics) Overhead(d time.Duration) {
	if m != nil {
		m.overhead.Observe(d.Seconds())
	}
}

// Login records a login; reason is a stable code for failures (e.g.
// state_mismatch), "" for success.
func (m *Metrics) Login(success bool, reason string) {
	if m == nil {
		return
	}
	if success {
		m.logins.WithLabelValues("success", "").Inc()
		return
	}
	m.logins.WithLabelValues("failure", reason).Inc()
}

// Logout records an ended session.
func (m *Metrics) Logout(reason string) {
	if m != nil {
		m.logouts.WithLabelValues(reason).Inc()
	}
}

// Refresh records a token refresh: success, error or rejected.
func (m *Metrics) Refresh(result string) {
	if m != nil {
		m.refreshes.WithLabelValues(result).Inc()
	}
}

// RevocationRetry records the outcome of a background retry of a
// revocation (sessions.Options.OnRevocationRetry).
func (m *Metrics) RevocationRetry(outcome string) {
	if m != nil {
		m.revokes.WithLabelValues(outcome).Inc()
	}
}

// NewDevice records a sign-in from a new device (auth.DeviceObserver).
func (m *Metrics) NewDevice() {
	if m != nil {
		m.newDevices.Inc()
	}
}

// DeviceBinding records a device binding event (auth.BindingObserver).
func (m *Metrics) DeviceBinding(event, reason string) {
	if m != nil {
		m.binding.WithLabelValues(event, reason).Inc()
	}
}

// RedisError records a failed Redis command.
func (m *Metrics) RedisError() {
	if m != nil {
		m.redisErrs.Inc()
	}
}

// IdPTransport wraps the transport of the identity provider's client,
// recording each call's duration and failures by operation.
func (m *Metrics) IdPTransport(next http.RoundTripper) http.RoundTripper {
	if m == nil {
		return next
	}
	if next == nil {
		next = http.DefaultTransport
	}
	return idpTransport{m: m, next: next}
}

type idpTransport struct {
	m    *Metrics
	next http.RoundTripper
}

func (t idpTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	op := idpOp(r.URL.Path)
	start := time.Now()
	resp, err := t.next.RoundTrip(r)
	t.m.idpSeconds.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil || resp.StatusCode >= 500 {
		t.m.idpErrors.WithLabelValues(op).Inc()
	}
	return resp, err
}

// idpOp names a provider call by its path, from a fixed set.
func idpOp(p string) string {
	switch p = strings.ToLower(p); {
	case strings.HasSuffix(p, "/.well-known/openid-configuration"):
		return "discovery"
	case strings.Contains(p, "token"):
		return "token"
	case strings.Contains(p, "jwk") || strings.Contains(p, "cert") || strings.Contains(p, "keys"):
		return "keys"
	case strings.Contains(p, "userinfo"):
		return "userinfo"
	}
	return "other"
}
