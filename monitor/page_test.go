package monitor

import (
	"testing"
	"time"

	"github.com/qapi-az/qapi/monitor/stats"
)

// An idle stretch has no minute records; the chart must still show it as
// a gap, a bar standing at its own minute of the hour.
func TestChartPlacesBarsByMinute(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 30, 20, 0, time.UTC)
	mins := []stats.Minute{{Start: now.Truncate(time.Minute).Add(-10 * time.Minute)},
		{Start: now.Truncate(time.Minute)}}
	c := newChart("t", "x", now, mins, []float64{5, 5}, nil, 0, "", false)
	slot := float64(c.Width) / 60
	if len(c.Bars) != 2 || c.Bars[0].X != 49*slot+1 || c.Bars[1].X != 59*slot+1 {
		t.Fatalf("bars at %+v, want slots 49 and 59 of 60", c.Bars)
	}
	if c.First != "09:31" || c.Last != "10:30" {
		t.Errorf("axis %s-%s, want the hour 09:31-10:30", c.First, c.Last)
	}
}

// On the logarithmic scale a millisecond bar stays visible under a
// limit of 2000 ms.
func TestChartLogScaleKeepsSmallValuesVisible(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 30, 0, 0, time.UTC)
	mins := []stats.Minute{{Start: now}}
	c := newChart("t", "ms", now, mins, []float64{10}, nil, 2000, "2 s limit", true)
	if h := c.Bars[0].H; h < float64(c.Height)/4 {
		t.Errorf("10 ms bar is %.1f px of %d, too small to see", h, c.Height)
	}
}
