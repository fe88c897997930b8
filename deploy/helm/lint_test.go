package helm

import (
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
)

// TestChart_Lint runs Helm's own linter (helm lint --strict: warnings
// count) on the chart with each values file of TestChart_Render.
func TestChart_Lint(t *testing.T) {
	for _, c := range renderCases {
		t.Run(strings.TrimSuffix(c.values, ".yaml"), func(t *testing.T) {
			vals, err := common.ReadValuesFile(filepath.Join("testdata", c.values))
			if err != nil {
				t.Fatal(err)
			}
			result := lint.RunAll(chartDir, vals, namespace)
			for _, m := range result.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("helm lint: %v", m)
				} else {
					t.Logf("helm lint: %v", m)
				}
			}
		})
	}
}
