package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// scrape reads the server's /metrics: every series without labels, by
// name (histograms give name_sum and name_count). Empty when unavailable.
func scrape(ctx context.Context, client *http.Client, b *bench) map[string]float64 {
	out := map[string]float64{}
	_, body, err := do(ctx, client, http.MethodGet, b.url("/metrics"), nil)
	if err != nil {
		return out
	}
	for line := range strings.Lines(string(body)) {
		name, value, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[name] = v
		}
	}
	return out
}

// commitStats is what the server's group commit did during a phase, from
// the sigbase_commit_* histograms.
type commitStats struct {
	Commits      int     `json:"commits"`
	MeanGroup    float64 `json:"mean_group"`
	MeanCommitMs float64 `json:"mean_commit_ms"`
}

// commitDelta compares two scrapes; nil when the server exports no commit metrics.
func commitDelta(before, after map[string]float64) *commitStats {
	n := after["sigbase_commit_group_size_count"] - before["sigbase_commit_group_size_count"]
	if n <= 0 {
		return nil
	}
	ops := after["sigbase_commit_group_size_sum"] - before["sigbase_commit_group_size_sum"]
	secs := after["sigbase_commit_duration_seconds_sum"] - before["sigbase_commit_duration_seconds_sum"]
	return &commitStats{
		Commits:      int(n),
		MeanGroup:    ratio(ops, n),
		MeanCommitMs: ratio(secs*1000, n),
	}
}

func (c *commitStats) String() string {
	if c == nil {
		return "server commit metrics unavailable"
	}
	return fmt.Sprintf("server: %d commits, %.1f writes per commit, %.3f ms per commit", c.Commits, c.MeanGroup, c.MeanCommitMs)
}
