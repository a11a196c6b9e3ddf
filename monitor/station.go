// Package monitor is the local monitoring station (clauses 2.6, 2.7): it
// receives one metadata record per exchange from the security server over
// a local socket, keeps statistics per service and client in its own
// bbolt file, watches the server's environment, raises alerts on
// thresholds, and shows it all as Prometheus metrics and a status page.
//
// # No access to the data
//
// The station never sees a message: the socket format (package
// appliance/events) has no field a body could travel in, and the program
// (cmd/qapi-monitor) confines itself with package monitor/confine so that
// it cannot open the message log, the keys or the configuration.
//
// # Never in the way
//
// The security server sends through events.SocketSink, which never blocks
// an exchange; what it drops while the station is down or slow is counted
// and reported here once the station is back.
package monitor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qapi-az/qapi/appliance/events"
	"github.com/qapi-az/qapi/monitor/confine"
	"github.com/qapi-az/qapi/monitor/stats"
	"github.com/qapi-az/qapi/monitor/store"
	"github.com/qapi-az/qapi/monitor/sysinfo"
)

// Config configures a Station.
type Config struct {
	// Socket is the Unix socket the security server connects to.
	Socket string
	// History is the bbolt file of statistics; Retention how long minutes
	// are kept (default 7 days).
	History   string
	Retention time.Duration
	// Disk is a path on the partition whose free space is watched (the
	// state partition, /perm on the appliance).
	Disk string
	// Thresholds raise alerts; zero fields take DefaultThresholds.
	Thresholds Thresholds
	// FlushInterval is how often history is saved and the system sampled
	// (default 10 s).
	FlushInterval time.Duration
	// MaxRows bounds the running totals kept per role, client and service
	// (default stats.DefaultMaxRows); past it the least recently seen are
	// folded into one row, stats.OtherKey.
	MaxRows int
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Deny are the paths the station must not be able to open: the
	// message log, the keys, the configuration (2.7). It tries them at
	// every FlushInterval, from inside its own confined process, and shows
	// the outcome; one that opens raises a critical alert.
	Deny []string
}

// PathCheck is the outcome of trying to open one Config.Deny path.
type PathCheck struct {
	Path    string `json:"path"`
	Refused bool   `json:"refused"`
	// Opened names what opened when not refused: the path, or its parent
	// directory when the path does not exist.
	Opened string `json:"opened,omitempty"`
}

// Station is a running monitoring station.
type Station struct {
	cfg   Config
	agg   *stats.Aggregator
	store *store.Store
	sys   *sysinfo.Reader
	ln    net.Listener

	mu         sync.Mutex
	sample     sysinfo.Sample
	checks     []PathCheck
	checked    time.Time
	server     *events.Status
	serverSeen time.Time

	received atomic.Uint64
	refused  atomic.Uint64
}

// New opens the history, restores the running totals and listens on the
// socket (replacing a stale socket file). Call Run, then Close.
func New(cfg Config) (*Station, error) {
	if cfg.Socket == "" || cfg.History == "" {
		return nil, errors.New("monitor needs a socket path and a history file")
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 7 * 24 * time.Hour
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Thresholds = cfg.Thresholds.withDefaults()

	st, err := store.Open(cfg.History, cfg.Retention)
	if err != nil {
		return nil, err
	}
	agg := stats.New(cfg.MaxRows)
	totals, err := st.Totals()
	if err != nil {
		st.Close()
		return nil, err
	}
	agg.Restore(totals)

	if err := os.Remove(cfg.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		st.Close()
		return nil, fmt.Errorf("remove stale monitor socket: %w", err)
	}
	ln, err := net.Listen("unix", cfg.Socket)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("listen for the security server on %s: %w", cfg.Socket, err)
	}
	s := &Station{cfg: cfg, agg: agg, store: st, ln: ln, sys: &sysinfo.Reader{Disk: cfg.Disk}}
	s.sampleSystem()
	return s, nil
}

// Run accepts the security server's connections and saves history until
// ctx ends; it then saves once more and returns. It tries the
// Config.Deny paths first and at every FlushInterval.
func (s *Station) Run(ctx context.Context) error {
	s.checkConfinement()
	go func() {
		<-ctx.Done()
		s.ln.Close()
	}()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(s.cfg.FlushInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.checkConfinement()
				s.sampleSystem()
				s.flush() // an error shows as a stale page; next tick retries
			}
		}
	}()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			wg.Wait()
			if ctx.Err() != nil {
				return s.flush()
			}
			return fmt.Errorf("accept on monitor socket: %w", err)
		}
		go s.serve(ctx, conn)
	}
}

// Close closes the socket and the history file.
func (s *Station) Close() error {
	s.ln.Close()
	return s.store.Close()
}

func (s *Station) serve(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	go func() {
		<-ctx.Done()
		conn.Close()
	}()
	dec := events.NewDecoder(conn)
	for {
		m, err := dec.Decode()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || ctx.Err() != nil {
				return
			}
			// A message that does not validate ends the connection: the
			// sender is broken or not the security server.
			s.refused.Add(1)
			return
		}
		s.ingest(m)
	}
}

// ingest applies one decoded message.
func (s *Station) ingest(m *events.Message) {
	switch m.Type {
	case events.TypeExchange:
		s.received.Add(1)
		s.agg.Add(*m.Exchange)
	case events.TypeDropped:
		s.agg.SetDropped(m.Since, m.Dropped, s.cfg.Now())
	case events.TypeStatus:
		s.mu.Lock()
		st := *m.Status
		s.server, s.serverSeen = &st, s.cfg.Now()
		s.mu.Unlock()
	}
}

// checkConfinement tries each Config.Deny path. It first runs in Run,
// not New, because a program confines itself between the two.
func (s *Station) checkConfinement() {
	checks := make([]PathCheck, 0, len(s.cfg.Deny))
	for _, p := range s.cfg.Deny {
		opened, ok := confine.Reachable(p)
		checks = append(checks, PathCheck{Path: p, Refused: !ok, Opened: opened})
	}
	s.mu.Lock()
	s.checks, s.checked = checks, s.cfg.Now()
	s.mu.Unlock()
}

func (s *Station) sampleSystem() {
	smp, err := s.sys.Read()
	if err != nil {
		return // the previous sample stays; its age shows on the page
	}
	s.mu.Lock()
	s.sample = smp
	s.mu.Unlock()
}

func (s *Station) flush() error {
	now := s.cfg.Now()
	return s.store.Save(now, s.agg.TakeMinutes(now), s.agg.Totals())
}

// Report is everything the station shows at one instant.
type Report struct {
	Time     time.Time      `json:"time"`
	Stats    stats.Snapshot `json:"stats"`
	Minutes  []stats.Minute `json:"minutes"` // the last hour, oldest first
	System   sysinfo.Sample `json:"system"`
	Server   *events.Status `json:"server,omitempty"`
	Seen     time.Time      `json:"serverSeen,omitzero"`
	Received uint64         `json:"received"`
	Refused  uint64         `json:"refused"` // connections ended by a bad message
	// Confinement is the last try of each Config.Deny path, at Checked.
	Confinement []PathCheck `json:"confinement"`
	Checked     time.Time   `json:"confinementChecked,omitzero"`
	Alerts      []Alert     `json:"alerts"`
}

// Report assembles the current view and evaluates the alerts.
func (s *Station) Report() (*Report, error) {
	// Save closed minutes first, so that history and the minute in
	// progress do not overlap.
	if err := s.flush(); err != nil {
		return nil, fmt.Errorf("save monitor history: %w", err)
	}
	now := s.cfg.Now()
	r := &Report{Time: now, Stats: s.agg.Snapshot(now), Received: s.received.Load(),
		Refused: s.refused.Load()}
	mins, err := s.store.Minutes(now.Add(-time.Hour))
	if err != nil {
		return nil, fmt.Errorf("read monitor history: %w", err)
	}
	r.Minutes = mins
	if !r.Stats.Current.Start.IsZero() {
		r.Minutes = append(r.Minutes, r.Stats.Current)
	}
	s.mu.Lock()
	r.System, r.Server, r.Seen = s.sample, s.server, s.serverSeen
	r.Confinement, r.Checked = s.checks, s.checked
	s.mu.Unlock()
	r.Alerts = Evaluate(r, s.cfg.Thresholds)
	return r, nil
}
