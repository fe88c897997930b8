// Package helm holds only tests: they render the chart in gatehouse/ with
// Helm's own template engine (helm.sh/helm/v4) for several values files,
// decode every object strictly into the Kubernetes API types, check what
// the chart promises (probes, security context, Secret mounts, the
// PodDisruptionBudget, ...) and load each rendered gatehouse.yaml with
// gatehouse's config.Load, offline, against stand-ins for the mounted
// Secret files. It is a module of its own so that Helm's and Kubernetes'
// dependencies stay out of gatehouse's go.mod.
package helm

import (
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/loader"
	"helm.sh/helm/v4/pkg/engine"
	"helm.sh/helm/v4/pkg/strvals"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

const (
	chartDir    = "gatehouse"
	releaseName = "wiki"
	namespace   = "wiki"
	fullname    = "wiki-gatehouse" // the release name plus the chart's
)

// renderChart renders the chart as `helm template wiki gatehouse -f
// testdata/<values> --set <sets>` would (a set starting json: is a
// --set-json): the values are checked against
// values.schema.json, then every template is rendered. It returns the
// rendered files by name, empty ones left out.
func renderChart(t *testing.T, values string, sets ...string) (map[string]string, error) {
	t.Helper()
	chrt, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	vals := map[string]any{}
	if values != "" {
		v, err := common.ReadValuesFile(filepath.Join("testdata", values))
		if err != nil {
			t.Fatalf("read values: %v", err)
		}
		vals = v
	}
	for _, s := range sets {
		parse := strvals.ParseInto
		if j, ok := strings.CutPrefix(s, "json:"); ok { // --set-json
			s, parse = j, strvals.ParseJSON
		}
		if err := parse(s, vals); err != nil {
			t.Fatalf("--set %s: %v", s, err)
		}
	}
	top, err := util.ToRenderValuesWithSchemaValidation(chrt, vals,
		common.ReleaseOptions{Name: releaseName, Namespace: namespace, IsInstall: true}, nil, false)
	if err != nil {
		return nil, err
	}
	out, err := engine.Engine{}.RenderWithContext(t.Context(), chrt, top)
	if err != nil {
		return nil, err
	}
	files := map[string]string{}
	for name, text := range out {
		if strings.TrimSpace(text) != "" {
			files[name] = text
		}
	}
	return files, nil
}

// objects is one rendering's Kubernetes objects, by kind.
type objects struct {
	deployments     []*appsv1.Deployment
	services        []*corev1.Service
	configMaps      []*corev1.ConfigMap
	secrets         []*corev1.Secret
	pdbs            []*policyv1.PodDisruptionBudget
	networkPolicies []*networkingv1.NetworkPolicy
	serviceMonitors []*serviceMonitor
	notes           string
}

// serviceMonitor is the part of the Prometheus Operator's ServiceMonitor
// the chart uses (its types are not in k8s.io/api).
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// apiVersions is the apiVersion of each kind the chart renders.
var apiVersions = map[string]string{
	"ConfigMap": "v1", "Secret": "v1", "Service": "v1",
	"Deployment":          "apps/v1",
	"PodDisruptionBudget": "policy/v1",
	"NetworkPolicy":       "networking.k8s.io/v1",
	"ServiceMonitor":      "monitoring.coreos.com/v1",
}

// parseObjects decodes every YAML document of the rendering strictly into
// its kind's type, so that a misspelt field fails the test.
func parseObjects(t *testing.T, files map[string]string) *objects {
	t.Helper()
	objs := &objects{}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if strings.HasSuffix(name, "NOTES.txt") {
			objs.notes = files[name]
			continue
		}
		for i, doc := range splitDocuments(t, name, files[name]) {
			var tm metav1.TypeMeta
			var meta struct {
				Metadata metav1.ObjectMeta `json:"metadata"`
			}
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s document %d: %v", name, i+1, err)
			}
			_ = yaml.Unmarshal(doc, &meta)
			if want, ok := apiVersions[tm.Kind]; !ok || tm.APIVersion != want {
				t.Errorf("%s document %d: %s %s: unexpected kind or apiVersion", name, i+1, tm.APIVersion, tm.Kind)
				continue
			}
			if meta.Metadata.Name == "" || meta.Metadata.Namespace != "" {
				t.Errorf("%s document %d: want metadata.name, and no namespace (helm -n chooses it)", name, i+1)
			}
			if meta.Metadata.Labels["app.kubernetes.io/instance"] != releaseName {
				t.Errorf("%s %s: no app.kubernetes.io/instance label", tm.Kind, meta.Metadata.Name)
			}
			var obj any
			switch tm.Kind {
			case "Deployment":
				obj = addNew(&objs.deployments)
			case "Service":
				obj = addNew(&objs.services)
			case "ConfigMap":
				obj = addNew(&objs.configMaps)
			case "Secret":
				obj = addNew(&objs.secrets)
			case "PodDisruptionBudget":
				obj = addNew(&objs.pdbs)
			case "NetworkPolicy":
				obj = addNew(&objs.networkPolicies)
			case "ServiceMonitor":
				obj = addNew(&objs.serviceMonitors)
			}
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				t.Errorf("%s: %s %s: %v", name, tm.Kind, meta.Metadata.Name, err)
			}
		}
	}
	return objs
}

// addNew appends a new zero object to the list and returns it.
func addNew[T any](list *[]*T) *T {
	v := new(T)
	*list = append(*list, v)
	return v
}

// splitDocuments returns the non-empty YAML documents of a rendered file.
func splitDocuments(t *testing.T, name, text string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, part := range strings.Split("\n"+text, "\n---") {
		var v any
		if err := yaml.Unmarshal([]byte(part), &v); err != nil {
			t.Fatalf("%s: not YAML: %v\n%s", name, err, part)
		}
		if v != nil {
			out = append(out, []byte(part))
		}
	}
	return out
}

// find returns the object named name, or fails the test.
func find[T any](t *testing.T, list []*T, name string, meta func(*T) metav1.ObjectMeta) *T {
	t.Helper()
	for _, o := range list {
		if meta(o).Name == name {
			return o
		}
	}
	var zero T
	t.Fatalf("no %T named %s", zero, name)
	return nil
}

// selects reports whether a selector with matchLabels picks pods labelled
// so. An empty selector would pick every pod, which the chart never means.
func selects(sel map[string]string, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}
