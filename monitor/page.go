package monitor

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"maps"
	"math"
	"net/http"
	"slices"
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
	Log          bool // the scale is logarithmic
}

type bar struct {
	X, Y, W, H float64
	Red        bool
	Tip        string
}

// newChart scales vals (one per minute of mins, oldest first) into bars
// placed by their minute in the hour before now, so that idle minutes,
// which have no record, show as gaps; reds marks the bars to draw in red;
// limit (0 for none) is drawn as a line. A logarithmic scale keeps
// milliseconds visible under a limit of seconds.
func newChart(title, unit string, now time.Time, mins []stats.Minute, vals []float64,
	reds []bool, limit float64, limitLabel string, logScale bool) chart {
	c := chart{Title: title, Width: 600, Height: 140, LimitY: -1, Unit: unit, Log: logScale}
	if len(vals) == 0 {
		c.Empty = true
		return c
	}
	scale := func(v float64) float64 { return v }
	if logScale {
		scale = func(v float64) float64 { return math.Log10(1 + max(v, 0)) }
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
	cur := now.Truncate(time.Minute)
	for i, v := range vals {
		ago := int(cur.Sub(mins[i].Start) / time.Minute)
		if ago < 0 || ago >= 60 {
			continue
		}
		h := scale(v) / scale(top) * float64(c.Height-20)
		c.Bars = append(c.Bars, bar{
			X: float64(59-ago)*slot + 1, W: slot - 2,
			Y: float64(c.Height) - h, H: h, Red: reds != nil && reds[i],
			Tip: fmt.Sprintf("%s: %s %s", mins[i].Start.Format("15:04"), trim(v), unit),
		})
	}
	if limit > 0 {
		c.LimitY = float64(c.Height) - scale(limit)/scale(top)*float64(c.Height-20)
		c.LimitLabel = limitLabel
	}
	c.Max = trim(top) + " " + unit
	c.Peak = trim(peak) + " " + unit
	c.First = cur.Add(-59 * time.Minute).Format("15:04")
	c.Last = cur.Format("15:04")
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
		newChart("Exchanges per minute", "exchanges", r.Time, mins, req, nil, 0, "", false),
		newChart("Faults per minute", "faults", r.Time, mins, faults, faultRed, 0, "", false),
		newChart("Processing time, 99th percentile (clause 5.3)", "ms", r.Time, mins, p99,
			slowRed, float64(stats.ProcessingLimit.Milliseconds()), "2 s limit", true),
		newChart("Busiest second of each minute (clause 5.4)", "req/s", r.Time, mins, peak,
			busyRed, stats.RateCapacity, "60/s capacity", false),
	}
}

// faultCode is one fault code of one row, for the page's table of error
// rates by code.
type faultCode struct {
	stats.Key
	Code  string
	Count uint64
	Share float64 // of the row's exchanges
}

// codes lists every row's fault codes, rows in Snapshot order, codes by
// name.
func codes(r *Report) []faultCode {
	var out []faultCode
	for _, row := range r.Stats.Rows {
		for _, c := range slices.Sorted(maps.Keys(row.Faults)) {
			out = append(out, faultCode{Key: row.Key, Code: c, Count: row.Faults[c],
				Share: float64(row.Faults[c]) / float64(max(row.Requests, 1))})
		}
	}
	return out
}

// WritePage renders the status page.
func WritePage(w io.Writer, r *Report) error {
	return page.Execute(w, struct {
		*Report
		Charts []chart
		Total  stats.Row
		Codes  []faultCode
	}{r, charts(r), r.Stats.Total(), codes(r)})
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
