package server

import (
	"errors"
	"fmt"
	"sync"

	"github.com/qapi-az/qapi/appliance/messagelog"
	"github.com/qapi-az/qapi/portal/incident"
)

// logCheck is the outcome of the last check of the live message log.
type logCheck struct {
	mu    sync.Mutex
	fault string // empty while the log verifies
}

// logVerified takes the outcome of a check of the live message log, run at
// Start and every Config.MessageLogVerify. A damaged entry (2.2.2, 6.3)
// does not stop the server: what is damaged is already on disk, and new
// records still chain on from the stored head and are durable before
// their response is released. It raises a fault that Status carries to
// the monitoring station until a check passes again, writes it to
// ErrorLog, and reports it once as a security incident (6.8), since a
// store that was written only through the log's own key and checks has
// been altered. An error that is not a damaged entry means the store could
// not be read; it is written to ErrorLog only.
func (s *Server) logVerified(n int, err error) {
	var ce *messagelog.CorruptError
	if err != nil && !errors.As(err, &ce) {
		s.errLog.Printf("message log not verified, to be tried at the next check: %v", err)
		return
	}
	fault := ""
	if ce != nil {
		fault = fmt.Sprintf("message log damaged: %v (%d entries before it verified)", ce, n)
	}
	s.logCheck.mu.Lock()
	changed := fault != s.logCheck.fault
	s.logCheck.fault = fault
	s.logCheck.mu.Unlock()
	if fault == "" || !changed {
		return
	}
	s.errLog.Printf("%s; exchanges go on, but archiving stops at that entry: keep a "+
		"copy of the file as evidence and report it", fault)
	detail := fault
	if len(detail) > incident.MaxDetail {
		detail = detail[:incident.MaxDetail]
	}
	s.report(incident.Report{Kind: incident.OtherIncident, Detail: detail})
}

// MessageLogFault returns the damaged entry of the live message log the
// last check found, and why; empty when it verified or no check has
// finished yet.
func (s *Server) MessageLogFault() string {
	s.logCheck.mu.Lock()
	defer s.logCheck.mu.Unlock()
	return s.logCheck.fault
}

// Faults returns what is wrong with the running server, one sentence a
// fault for a person, for the management API's status; nil while all is
// well. Today that is the message log's damage (MessageLogFault).
func (s *Server) Faults() []string {
	if f := s.MessageLogFault(); f != "" {
		return []string{f}
	}
	return nil
}
