package monitor

import (
	"fmt"
	"time"

	"github.com/qapi-az/qapi/monitor/stats"
)

// Severity ranks an alert.
type Severity string

// Severities.
const (
	Warning  Severity = "warning"
	Critical Severity = "critical"
)

// Alert is one threshold crossed.
type Alert struct {
	Name     string   `json:"name"`
	Severity Severity `json:"severity"`
	Message  string   `json:"message"`
	// Clause is the regulation clause the threshold comes from, if any.
	Clause string `json:"clause,omitempty"`
}

// Thresholds raise alerts. A zero field takes the default of
// DefaultThresholds.
type Thresholds struct {
	// FaultRate is the share of faults over the last five minutes.
	FaultRate float64 `json:"faultRate"`
	// Processing is the 99th percentile of processing time over the last
	// five minutes (clause 5.3: 2 s).
	Processing time.Duration `json:"processing"`
	// Rate is the busiest second over the last minute (clause 5.4: 60/s
	// is what the server is sized for).
	Rate float64 `json:"rate"`
	// CertExpiry warns this long before a certificate expires.
	CertExpiry time.Duration `json:"certExpiry"`
	// DiskFree is the lowest free share of the state partition.
	DiskFree float64 `json:"diskFree"`
	// MemUsed is the highest used share of memory.
	MemUsed float64 `json:"memUsed"`
	// ConfAge is the oldest global configuration accepted without warning.
	ConfAge time.Duration `json:"confAge"`
	// TimestampLag is the longest wait for a time stamp.
	TimestampLag time.Duration `json:"timestampLag"`
	// Silence is how long the server may go without a status report.
	Silence time.Duration `json:"silence"`
	// DropQuiet is how long after the dropped total last grew the
	// events_dropped alert stays raised.
	DropQuiet time.Duration `json:"dropQuiet"`
}

// DefaultThresholds are the thresholds used where none are configured.
var DefaultThresholds = Thresholds{
	FaultRate:    0.05,
	Processing:   stats.ProcessingLimit,
	Rate:         stats.RateCapacity,
	CertExpiry:   30 * 24 * time.Hour,
	DiskFree:     0.10,
	MemUsed:      0.90,
	ConfAge:      15 * time.Minute,
	TimestampLag: 10 * time.Minute,
	Silence:      time.Minute,
	DropQuiet:    15 * time.Minute,
}

func (t Thresholds) withDefaults() Thresholds {
	d := DefaultThresholds
	pick := func(v *float64, def float64) {
		if *v == 0 {
			*v = def
		}
	}
	pickD := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	pick(&t.FaultRate, d.FaultRate)
	pick(&t.Rate, d.Rate)
	pick(&t.DiskFree, d.DiskFree)
	pick(&t.MemUsed, d.MemUsed)
	pickD(&t.Processing, d.Processing)
	pickD(&t.CertExpiry, d.CertExpiry)
	pickD(&t.ConfAge, d.ConfAge)
	pickD(&t.TimestampLag, d.TimestampLag)
	pickD(&t.Silence, d.Silence)
	pickD(&t.DropQuiet, d.DropQuiet)
	return t
}

// Evaluate returns the alerts r raises under th, most severe first.
func Evaluate(r *Report, th Thresholds) []Alert {
	var crit, warn []Alert
	add := func(sev Severity, name, clause, format string, args ...any) {
		a := Alert{Name: name, Severity: sev, Clause: clause,
			Message: fmt.Sprintf(format, args...)}
		if sev == Critical {
			crit = append(crit, a)
		} else {
			warn = append(warn, a)
		}
	}

	var recent stats.Minute
	var peak uint64
	for _, m := range r.Minutes {
		if r.Time.Sub(m.Start) > 5*time.Minute {
			continue
		}
		recent.Requests += m.Requests
		recent.Faults += m.Faults
		recent.Processing.Merge(&m.Processing)
		if r.Time.Sub(m.Start) <= time.Minute {
			peak = max(peak, m.PeakRate)
		}
	}
	if recent.Requests > 0 {
		if fr := float64(recent.Faults) / float64(recent.Requests); fr > th.FaultRate {
			add(Warning, "fault_rate", "", "%.1f%% of the last 5 minutes' %d exchanges "+
				"were faults (threshold %.1f%%)", fr*100, recent.Requests, th.FaultRate*100)
		}
		if p99 := recent.Processing.Quantile(0.99); p99 > th.Processing {
			add(Critical, "processing_time", "5.3", "99th percentile of processing time "+
				"is %v, above %v", p99, th.Processing)
		}
	}
	if float64(peak) > th.Rate {
		add(Warning, "request_rate", "5.4", "%d requests in one second, above the %.0f/s "+
			"the server is sized for", peak, th.Rate)
	}
	for _, c := range r.Confinement {
		if !c.Refused {
			add(Critical, "confinement_broken", "2.7", "the monitor can open %s, which it "+
				"must not reach", c.Opened)
		}
	}
	// The total stays on the page; the alert is for drops still going on.
	if grew := r.Stats.DroppedGrew; r.Stats.Dropped > 0 && r.Time.Sub(grew) < th.DropQuiet {
		add(Warning, "events_dropped", "", "%d exchange records did not reach the monitor "+
			"(it was down or slow), the last of them reported %v ago; the message log "+
			"still holds every exchange", r.Stats.Dropped,
			max(r.Time.Sub(grew), 0).Round(time.Second))
	}

	if s := r.System; s.MemTotal > 0 && s.MemUsed() > th.MemUsed {
		add(Warning, "memory", "", "memory %.0f%% used (threshold %.0f%%)",
			s.MemUsed()*100, th.MemUsed*100)
	}
	if s := r.System; s.DiskTotal > 0 && s.DiskFreeShare() < th.DiskFree {
		add(Critical, "disk_space", "2.2.2", "state partition %.1f%% free (threshold "+
			"%.0f%%): the message log stops exchanges when it is full",
			s.DiskFreeShare()*100, th.DiskFree*100)
	}

	srv := r.Server
	if srv == nil || r.Time.Sub(r.Seen) > th.Silence {
		add(Critical, "server_silent", "2.6", "no status from the security server for "+
			"more than %v", th.Silence)
		return append(crit, warn...)
	}
	for _, c := range srv.Certificates {
		left := c.NotAfter.Sub(r.Time)
		switch {
		case left <= 0:
			add(Critical, "certificate_expired", "2.3", "%s certificate expired on %s",
				c.Purpose, c.NotAfter.Format(time.DateOnly))
		case left < th.CertExpiry:
			add(Warning, "certificate_expiry", "2.3", "%s certificate expires in %d days",
				c.Purpose, int(left.Hours()/24))
		}
	}
	switch {
	case srv.GlobalConfExpires.IsZero():
		add(Critical, "globalconf_missing", "4.1.2.3", "no global configuration loaded")
	case !r.Time.Before(srv.GlobalConfExpires):
		add(Critical, "globalconf_expired", "4.1.2.3", "global configuration %d expired; "+
			"exchanges are refused until a fresh one arrives", srv.GlobalConfSerial)
	case r.Time.Sub(srv.GlobalConfIssued) > th.ConfAge:
		add(Warning, "globalconf_age", "4.1.2.3", "global configuration is %v old",
			r.Time.Sub(srv.GlobalConfIssued).Round(time.Second))
	}
	if srv.MessageLogFault != "" {
		add(Critical, "message_log_damaged", "2.2.2", "%s", srv.MessageLogFault)
	}
	if srv.TimestampLag > th.TimestampLag {
		add(Warning, "timestamp_lag", "6.3", "oldest unstamped log record waited %v",
			srv.TimestampLag.Round(time.Second))
	}
	for _, l := range srv.Links {
		switch {
		case !l.Up:
			add(Critical, "link_down", "5.5", "%s interface %s is down", l.Role, l.Name)
		case l.SpeedMbps < 1000 || !l.FullDuplex:
			add(Warning, "link_speed", "5.5", "%s interface %s runs at %d Mbit/s %s, "+
				"below 1 Gbit/s full duplex", l.Role, l.Name, l.SpeedMbps, duplex(l.FullDuplex))
		}
	}
	return append(crit, warn...)
}

func duplex(full bool) string {
	if full {
		return "full duplex"
	}
	return "half duplex"
}
