package events

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// SocketOptions configure a SocketSink.
type SocketOptions struct {
	// Buffer is how many records wait while the monitor is absent or slow;
	// past it records are dropped and counted. Default 8192.
	Buffer int
	// Status, when set, is called every StatusInterval and its result sent.
	Status         func() Status
	StatusInterval time.Duration // default 10 s
	// WriteTimeout bounds one write to the socket. Default 1 s.
	WriteTimeout time.Duration
}

// SocketSink sends records to the monitoring station over a Unix stream
// socket. Emit never blocks: records wait in a bounded buffer while the
// monitor is absent, and are dropped and counted when the buffer is full
// (the message log, not the monitor, is the record of exchanges). After a
// reconnect the sink first sends the total dropped so far, with the
// instant the sink started (see Message.Since), so the monitor shows what
// it missed and can tell this count from one of an earlier sink. A fault
// code outside the security server's own stable codes reaches the monitor
// as its class only (see FaultCode).
type SocketSink struct {
	path    string
	opts    SocketOptions
	started time.Time
	ch      chan Record
	dropped atomic.Uint64
	sent    atomic.Uint64
	done    chan struct{}
	wg      sync.WaitGroup
}

// NewSocketSink starts a sink that connects to the Unix socket at path in
// the background, reconnecting with backoff. It never fails: a missing
// monitor only means records are counted as dropped. Call Close to stop.
func NewSocketSink(path string, opts SocketOptions) *SocketSink {
	if opts.Buffer <= 0 {
		opts.Buffer = 8192
	}
	if opts.StatusInterval <= 0 {
		opts.StatusInterval = 10 * time.Second
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = time.Second
	}
	s := &SocketSink{
		path:    path,
		opts:    opts,
		started: time.Now().Round(0),
		ch:      make(chan Record, opts.Buffer),
		done:    make(chan struct{}),
	}
	s.wg.Add(1)
	go s.run()
	return s
}

// Emit queues r, or drops and counts it when the buffer is full, as when
// the monitor is absent or a write to it is stuck.
func (s *SocketSink) Emit(r Record) {
	select {
	case s.ch <- r:
	default:
		s.dropped.Add(1)
	}
}

// Dropped returns how many records were dropped since the sink started.
func (s *SocketSink) Dropped() uint64 { return s.dropped.Load() }

// Started returns the instant the sink started, which its dropped
// messages carry as Message.Since.
func (s *SocketSink) Started() time.Time { return s.started }

// Sent returns how many records reached the socket.
func (s *SocketSink) Sent() uint64 { return s.sent.Load() }

// Close stops the sink; records still queued are dropped uncounted.
func (s *SocketSink) Close() error {
	close(s.done)
	s.wg.Wait()
	return nil
}

func (s *SocketSink) run() {
	defer s.wg.Done()
	backoff := 100 * time.Millisecond
	for {
		conn, err := net.DialTimeout("unix", s.path, time.Second)
		if err == nil {
			backoff = 100 * time.Millisecond
			s.serve(conn)
			conn.Close()
		}
		select {
		case <-s.done:
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// serve writes to conn until a write fails or the sink closes.
func (s *SocketSink) serve(conn net.Conn) {
	enc := NewEncoder(conn)
	write := func(m *Message) bool {
		conn.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
		return enc.Encode(m) == nil
	}
	reported := uint64(0)
	reportDropped := func() bool {
		d := s.dropped.Load()
		if d == reported {
			return true
		}
		reported = d
		return write(&Message{Type: TypeDropped, Dropped: d, Since: s.started})
	}
	if !reportDropped() {
		return
	}
	tick := time.NewTicker(s.opts.StatusInterval)
	defer tick.Stop()
	if s.opts.Status != nil {
		st := s.opts.Status()
		if !write(&Message{Type: TypeStatus, Status: &st}) {
			return
		}
	}
	for {
		select {
		case <-s.done:
			return
		case r := <-s.ch:
			// A service's own fault code is message text (2.7).
			r.FaultCode = FaultCode(r.FaultCode)
			if r.validate() != nil {
				// A record that fails validation is a server bug; it is
				// counted, not sent, so the monitor never sees bad data.
				s.dropped.Add(1)
				continue
			}
			if !write(&Message{Type: TypeExchange, Exchange: &r}) {
				s.dropped.Add(1)
				return
			}
			s.sent.Add(1)
		case <-tick.C:
			if !reportDropped() {
				return
			}
			if s.opts.Status != nil {
				st := s.opts.Status()
				if !write(&Message{Type: TypeStatus, Status: &st}) {
					return
				}
			}
		}
	}
}
