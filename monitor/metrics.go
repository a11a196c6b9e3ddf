package monitor

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/qapi-az/qapi/monitor/stats"
)

// WriteMetrics writes r in the Prometheus text exposition format 0.0.4.
func WriteMetrics(w io.Writer, r *Report) error {
	m := &metricWriter{w: w}
	m.family("qapi_exchanges_total", "counter", "Exchanges seen, by role, client and service; "+
		"role, client and service \"other\" for the rows folded together.")
	for _, row := range r.Stats.Rows {
		m.sample("qapi_exchanges_total", row.Requests, rowLabels(&row)...)
	}
	m.family("qapi_faults_total", "counter", "Exchanges that ended in a fault, by code.")
	for _, row := range r.Stats.Rows {
		codes := make([]string, 0, len(row.Faults))
		for c := range row.Faults {
			codes = append(codes, c)
		}
		sort.Strings(codes)
		for _, c := range codes {
			m.sample("qapi_faults_total", row.Faults[c], append(rowLabels(&row), "code", c)...)
		}
	}
	m.family("qapi_processing_seconds", "histogram",
		"Processing time without the provider's own time (clause 5.3).")
	for _, row := range r.Stats.Rows {
		lbl := rowLabels(&row)
		var cum uint64
		for i, b := range stats.Bounds {
			cum += row.Processing.Counts[i]
			m.sample("qapi_processing_seconds_bucket", cum,
				append(lbl, "le", strconv.FormatFloat(b.Seconds(), 'g', -1, 64))...)
		}
		m.sample("qapi_processing_seconds_bucket", row.Processing.Count,
			append(lbl, "le", "+Inf")...)
		m.sample("qapi_processing_seconds_sum", row.Processing.Sum.Seconds(), lbl...)
		m.sample("qapi_processing_seconds_count", row.Processing.Count, lbl...)
	}
	m.family("qapi_over_limit_total", "counter", "Exchanges processed in more than 2 s (5.3).")
	for _, row := range r.Stats.Rows {
		m.sample("qapi_over_limit_total", row.OverLimit, rowLabels(&row)...)
	}
	m.family("qapi_rows_folded_total", "counter", "Rows of a role, client and service seen "+
		"least recently, folded into the row labelled other to keep at most qapi_rows_max.")
	m.sample("qapi_rows_folded_total", r.Stats.Folded)
	m.gauge("qapi_rows_max", "Rows of a role, client and service kept apart.",
		r.Stats.MaxRows)
	m.gauge("qapi_request_rate", "Requests per second over the last 10 s (5.4).", r.Stats.Rate)
	m.gauge("qapi_request_rate_peak", "Busiest second of the last minute (5.4).",
		r.Stats.PeakRate)
	m.family("qapi_events_dropped_total", "counter",
		"Exchange records the server dropped while the monitor was down or slow.")
	m.sample("qapi_events_dropped_total", r.Stats.Dropped)
	m.gauge("qapi_monitor_refused_connections", "Connections ended by a malformed message.",
		r.Refused)

	m.family("qapi_confinement_refused", "gauge", "1 when the monitor's own try to open a "+
		"path it must not reach (message log, keys, configuration) failed (clause 2.7).")
	for _, c := range r.Confinement {
		m.sample("qapi_confinement_refused", b2i(c.Refused), "path", c.Path)
	}

	m.gauge("qapi_cpu_busy_ratio", "Processor time not idle.", r.System.CPUBusy)
	m.gauge("qapi_memory_used_ratio", "Memory in use.", r.System.MemUsed())
	m.gauge("qapi_state_disk_free_bytes", "Free space on the state partition.",
		r.System.DiskFree)

	if s := r.Server; s != nil {
		m.gauge("qapi_status_age_seconds", "Age of the server's last status report.",
			r.Time.Sub(r.Seen).Seconds())
		m.family("qapi_certificate_expiry_seconds", "gauge", "Time until a certificate expires.")
		for _, c := range s.Certificates {
			m.sample("qapi_certificate_expiry_seconds", c.NotAfter.Sub(r.Time).Seconds(),
				"purpose", c.Purpose)
		}
		if !s.GlobalConfIssued.IsZero() {
			m.gauge("qapi_globalconf_age_seconds", "Age of the global configuration.",
				r.Time.Sub(s.GlobalConfIssued).Seconds())
			m.gauge("qapi_globalconf_expires_in_seconds", "Time until it is stale.",
				s.GlobalConfExpires.Sub(r.Time).Seconds())
		}
		m.gauge("qapi_timestamp_lag_seconds", "Wait of the oldest unstamped log record.",
			s.TimestampLag.Seconds())
		m.family("qapi_link_speed_mbps", "gauge", "Interface speed (clause 5.5).")
		for _, l := range s.Links {
			m.sample("qapi_link_speed_mbps", l.SpeedMbps, "role", l.Role, "name", l.Name)
		}
		m.family("qapi_link_up", "gauge", "Interface link state, 1 when up.")
		for _, l := range s.Links {
			m.sample("qapi_link_up", b2i(l.Up), "role", l.Role, "name", l.Name)
		}
		m.family("qapi_link_full_duplex", "gauge", "1 when the link is full duplex.")
		for _, l := range s.Links {
			m.sample("qapi_link_full_duplex", b2i(l.FullDuplex), "role", l.Role, "name", l.Name)
		}
	}
	m.family("qapi_alert", "gauge", "Alerts raised now; 1 for each.")
	for _, a := range r.Alerts {
		m.sample("qapi_alert", 1, "name", a.Name, "severity", string(a.Severity))
	}
	return m.err
}

func rowLabels(r *stats.Row) []string {
	return []string{"role", string(r.Role), "client", r.Client, "service", r.Service}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

type metricWriter struct {
	w   io.Writer
	err error
}

func (m *metricWriter) family(name, typ, help string) {
	m.printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

func (m *metricWriter) gauge(name, help string, v any) {
	m.family(name, "gauge", help)
	m.sample(name, v)
}

// sample writes one line; labels are name, value pairs.
func (m *metricWriter) sample(name string, v any, labels ...string) {
	var b strings.Builder
	b.WriteString(name)
	if len(labels) > 0 {
		b.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(labels[i])
			b.WriteString(`="`)
			b.WriteString(labelEscaper.Replace(labels[i+1]))
			b.WriteByte('"')
		}
		b.WriteByte('}')
	}
	m.printf("%s %v\n", b.String(), v)
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func (m *metricWriter) printf(format string, args ...any) {
	if m.err == nil {
		_, m.err = fmt.Fprintf(m.w, format, args...)
	}
}
