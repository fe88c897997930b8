package serve

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/config"
)

// TestNewLogger_DurationsAsStrings: JSON logs carry durations as "2s",
// not as nanoseconds, at the top level and inside groups.
func TestNewLogger_DurationsAsStrings(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(&buf, config.Log{Level: "info", Format: "json"})
	log.Warn("identity provider discovery failed; retrying", "retry_in", 2*time.Second,
		slog.Group("redis", "timeout", 500*time.Millisecond), "count", 3)
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, buf.Bytes())
	}
	redis, _ := got["redis"].(map[string]any)
	if got["retry_in"] != "2s" || redis["timeout"] != "500ms" || got["count"] != 3.0 {
		t.Errorf("log line %s; want \"retry_in\":\"2s\", \"redis\":{\"timeout\":\"500ms\"} and \"count\":3", buf.Bytes())
	}
}
