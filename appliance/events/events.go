// Package events carries one metadata record per exchange from the security
// server to the local monitoring station (clauses 2.6, 2.7).
//
// A Record has no field that could carry a message body: only identifiers,
// times, sizes and the outcome. The server emits through a Sink, which must
// never block the exchange; a Sink that cannot keep up drops records and
// counts them.
package events

import "time"

// Result is the outcome of one exchange.
type Result string

// Results of an exchange.
const (
	ResultOK    Result = "ok"
	ResultFault Result = "fault"
)

// Role says on which side of the exchange the reporting server stood.
type Role string

// Roles of the reporting server.
const (
	// RoleClient: the server is the client's security server (its
	// information system sent the request).
	RoleClient Role = "client"
	// RoleProvider: the server is the provider's security server.
	RoleProvider Role = "provider"
)

// Record is the metadata of one exchange as one security server saw it.
// Times are wall-clock instants on the reporting server; zero means the
// exchange did not reach that hop.
type Record struct {
	Role      Role   `json:"role"`
	MessageID string `json:"messageId"`
	Client    string `json:"client"`  // ident.Client.String()
	Service   string `json:"service"` // ident.Service.String()

	// Received: the request arrived at this server.
	Received time.Time `json:"received"`
	// Forwarded: the request left this server for the next hop (the
	// provider's server, or the provider's information system).
	Forwarded time.Time `json:"forwarded,omitzero"`
	// Answered: the next hop's response arrived back.
	Answered time.Time `json:"answered,omitzero"`
	// Done: the response (or fault) was sent back to the caller.
	Done time.Time `json:"done"`

	RequestBytes  int    `json:"requestBytes"`
	ResponseBytes int    `json:"responseBytes"`
	Result        Result `json:"result"`
	FaultCode     string `json:"faultCode,omitempty"`
}

// ProcessingTime is the time the exchange spent in this server and beyond,
// minus the time the next hop took: what clause 5.3 limits to 2 seconds.
func (r Record) ProcessingTime() time.Duration {
	total := r.Done.Sub(r.Received)
	if !r.Forwarded.IsZero() && !r.Answered.IsZero() {
		total -= r.Answered.Sub(r.Forwarded)
	}
	return total
}

// Sink receives records. Emit must return at once: it may drop the record
// when the consumer is slow or absent, but must count what it dropped.
// Implementations must be safe for concurrent use.
type Sink interface {
	Emit(Record)
}

// Discard is a Sink that drops every record.
var Discard Sink = discard{}

type discard struct{}

func (discard) Emit(Record) {}
