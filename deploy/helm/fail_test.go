package helm

import (
	"strings"
	"testing"
)

// TestChart_RefusesToRender checks that values which would deploy
// something broken or unsafe fail the render, with a message naming the
// value and the fix.
func TestChart_RefusesToRender(t *testing.T) {
	for _, c := range []struct {
		name   string
		values string
		sets   []string
		want   []string // substrings of the error
	}{
		{
			name: "replicas without redis", values: "standalone.yaml", sets: []string{"replicaCount=3"},
			want: []string{"replicaCount: 3 replicas need config.session.store: redis", `got "memory"`, "or replicaCount: 1"},
		},
		{
			name: "replicas with the memory store named", values: "standalone.yaml",
			sets: []string{"replicaCount=2", "config.session.store=memory"},
			want: []string{"replicaCount: 2 replicas need config.session.store: redis"},
		},
		{
			name: "redis without its URL", values: "standalone.yaml", sets: []string{"config.session.store=redis"},
			want: []string{"secrets.redisURL: config.session.store is redis but no URL is given"},
		},
		{
			name: "replicas without one assertion key", values: "redis.yaml", sets: []string{"secrets.assertionKey.existingSecret="},
			want: []string{"secrets.assertionKey: 3 replicas need one assertion signing key"},
		},
		{
			name: "no cookie secret", values: "standalone.yaml", sets: []string{"secrets.cookie.value="},
			want: []string{"secrets.cookie: required", "existingSecret"},
		},
		{
			name: "chart defaults alone", values: "",
			want: []string{"config.external_url: required"},
		},
		{
			name: "client secret in config", values: "standalone.yaml", sets: []string{"config.oidc.client_secret=hunter2"},
			want: []string{"config.oidc.client_secret: secrets do not belong in config", "secrets.clientSecret.existingSecret"},
		},
		{
			name: "cookie secret in config", values: "standalone.yaml", sets: []string{"config.cookie.secret=hunter2"},
			want: []string{"config.cookie.secret: secrets do not belong in config"},
		},
		{
			name: "secret file path in config", values: "standalone.yaml", sets: []string{"config.cookie.secret_file=/x"},
			want: []string{"config.cookie.secret_file: secrets do not belong in config"},
		},
		{
			name: "redis password in config", values: "standalone.yaml",
			sets: []string{"config.session.store=redis", "config.session.redis.url=redis://:pw@redis:6379/0"},
			want: []string{"config.session.redis.url: this URL carries credentials"},
		},
		{
			name: "listen in config", values: "standalone.yaml", sets: []string{"config.listen=:8080"},
			want: []string{"config.listen: the chart sets it"},
		},
		{
			name: "admin listen in config", values: "standalone.yaml", sets: []string{"config.admin.listen=:9090"},
			want: []string{"config.admin.listen: the chart sets it from metrics.enabled"},
		},
		{
			name: "standalone without upstream", values: "standalone.yaml", sets: []string{"config.upstream="},
			want: []string{"config.upstream: required in standalone mode"},
		},
		{
			name: "sidecar without app image", values: "sidecar.yaml", sets: []string{"app.image="},
			want: []string{"app.image: required in sidecar mode"},
		},
		{
			name: "sidecar with an upstream", values: "sidecar.yaml", sets: []string{"config.upstream=http://wiki:8080"},
			want: []string{"config.upstream: in sidecar mode the chart sets it to http://127.0.0.1:<app.port>"},
		},
		{
			name: "unknown mode", values: "standalone.yaml", sets: []string{"mode=daemonset"},
			want: []string{"values don't meet the specifications of the schema", "mode"},
		},
		{
			name: "misspelt value", values: "standalone.yaml", sets: []string{"replicas=3"},
			want: []string{"values don't meet the specifications of the schema", "replicas"},
		},
		{
			name: "misspelt configuration key", values: "standalone.yaml", sets: []string{"config.oidc.issuer_url=https://sso.example.com"},
			want: []string{"values don't meet the specifications of the schema", "/config/oidc", "issuer_url"},
		},
		{
			name: "configuration value of the wrong type", values: "standalone.yaml", sets: []string{"config.allow.any_user=yes"},
			want: []string{"values don't meet the specifications of the schema", "/config/allow/any_user"},
		},
		{
			name: "service monitor without metrics", values: "standalone.yaml", sets: []string{"metrics.serviceMonitor.enabled=true"},
			want: []string{"metrics.serviceMonitor.enabled: needs metrics.enabled: true"},
		},
		{
			name: "memory limit in an unknown unit", values: "standalone.yaml", sets: []string{"resources.limits.memory=1.5Gi"},
			want: []string{`resources.limits.memory: "1.5Gi" is not a whole number`},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := renderChart(t, c.values, c.sets...)
			if err == nil {
				t.Fatalf("values %s with %q rendered; want an error containing %q", c.values, c.sets, c.want)
			}
			t.Logf("refused: %v", err)
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
		})
	}
}
