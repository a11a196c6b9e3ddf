package monitor

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"net/http"
	"time"

	"github.com/qapi-az/qapi/monitor/stats"
)

//go:embed page.html
var pageHTML string

var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"ms":    func(d time.Duration) string { return fmt.Sprintf("%.1f ms", d.Seconds()*1000) },
	"pct":   func(f float64) string { return fmt.Sprintf("%.1f%%", f*100) },
	"mib":   func(b uint64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) },
	"p99":   func(h stats.Histogram) time.Duration { return h.Quantile(0.99) },
	"p50":   func(h stats.Histogram) time.Duration { return h.Quantile(0.5) },
	"clock": func(t time.Time) string { return t.Format("15:04:05") },
	"date":  func(t time.Time) string { return t.Format(time.DateOnly) },
	"since": func(a, b time.Time) string { return a.Sub(b).Round(time.Second).String() },
	"faults": func(r stats.Row) string {
		if r.Requests == 0 {
			return "0"
		}
		return fmt.Sprintf("%d (%.1f%%)", r.FaultCount(),
			100*float64(r.FaultCount())/float64(r.Requests))
	},
}).Parse(pageHTML))

// chart is a bar chart of one value per minute with an optional limit line,
// laid out for an SVG of Width x Height.
type chart struct {
	Title        string
	Width        int
	Height       int
	Bars         []bar
	LimitY       float64 // y of the limit line; negative when none
	LimitLabel   string
	Max          string // the label of the top of the scale
	First, Last  string // time labels
	Empty        bool
	Unit         string
	Peak         string
	ShowOverflow bool
}

type bar struct {
	X, Y, W, H float64
	Red        bool
	Tip        string
}

// newChart scales vals (one per minute, oldest first) into bars; reds marks
// the bars to draw in red; limit (0 for none) is drawn as a line.
func newChart(title, unit string, mins []stats.Minute, vals []float64, reds []bool,
	limit float64, limitLabel string) chart {
	c := chart{Title: title, Width: 600, Height: 140, LimitY: -1, Unit: unit}
	if len(vals) == 0 {
		c.Empty = true
		return c
	}
	top := limit * 1.25
	peak := 0.0
	for _, v := range vals {
		top = math.Max(top, v)
		peak = math.Max(peak, v)
	}
	if top == 0 {
		top = 1
	}
	slot := float64(c.Width) / 60
	start := 60 - len(vals)
	for i, v := range vals {
		h := v / top * float64(c.Height-20)
		c.Bars = append(c.Bars, bar{
			X: float64(start+i)*slot + 1, W: slot - 2,
			Y: float64(c.Height) - h, H: h, Red: reds != nil && reds[i],
			Tip: fmt.Sprintf("%s: %s %s", mins[i].Start.Format("15:04"), trim(v), unit),
		})
	}
	if limit > 0 {
		c.LimitY = float64(c.Height) - limit/top*float64(c.Height-20)
		c.LimitLabel = limitLabel
	}
	c.Max = trim(top) + " " + unit
	c.Peak = trim(peak) + " " + unit
	c.First = mins[0].Start.Format("15:04")
	c.Last = mins[len(mins)-1].Start.Format("15:04")
	return c
}

func trim(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

// charts builds the page's charts from the last hour.
func charts(r *Report) []chart {
	mins := r.Minutes
	if len(mins) > 60 {
		mins = mins[len(mins)-60:]
	}
	var req, faults, p99, peak []float64
	var faultRed, slowRed, busyRed []bool
	for _, m := range mins {
		req = append(req, float64(m.Requests))
		faults = append(faults, float64(m.Faults))
		faultRed = append(faultRed, m.Faults > 0)
		p := m.Processing.Quantile(0.99).Seconds() * 1000
		p99 = append(p99, p)
		slowRed = append(slowRed, p > float64(stats.ProcessingLimit.Milliseconds()))
		peak = append(peak, float64(m.PeakRate))
		busyRed = append(busyRed, float64(m.PeakRate) > stats.RateCapacity)
	}
	return []chart{
		newChart("Exchanges per minute", "exchanges", mins, req, nil, 0, ""),
		newChart("Faults per minute", "faults", mins, faults, faultRed, 0, ""),
		newChart("Processing time, 99th percentile (clause 5.3)", "ms", mins, p99, slowRed,
			float64(stats.ProcessingLimit.Milliseconds()), "2 s limit"),
		newChart("Busiest second of each minute (clause 5.4)", "req/s", mins, peak, busyRed,
			stats.RateCapacity, "60/s capacity"),
	}
}

// WritePage renders the status page.
func WritePage(w io.Writer, r *Report) error {
	return page.Execute(w, struct {
		*Report
		Charts []chart
		Total  stats.Row
	}{r, charts(r), r.Stats.Total()})
}

// Handler serves the status page at /, Prometheus metrics at /metrics and
// the report as JSON at /api/status.
func (s *Station) Handler() http.Handler {
	mux := http.NewServeMux()
	report := func(w http.ResponseWriter) *Report {
		r, err := s.Report()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return nil
		}
		return r
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, req *http.Request) {
		if r := report(w); r != nil {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			WritePage(w, r)
		}
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, req *http.Request) {
		if r := report(w); r != nil {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
			WriteMetrics(w, r)
		}
	})
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, req *http.Request) {
		if r := report(w); r != nil {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(r)
		}
	})
	return mux
}
