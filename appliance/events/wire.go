package events

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/soap"
)

// The socket between the security server and the monitoring station
// carries one JSON Message per line. Every field is an identifier, a time,
// a number or a short code, each bounded and checked on decode, so that
// no message body can travel over it (clause 2.7).

// Message types.
const (
	TypeExchange = "exchange"
	TypeStatus   = "status"
	TypeDropped  = "dropped"
)

// MaxLine is the longest line a Decoder accepts.
const MaxLine = 4096

// Message is one line on the socket: exactly one of Exchange, Status or
// Dropped is set, as Type says.
type Message struct {
	Type     string  `json:"type"`
	Exchange *Record `json:"exchange,omitempty"`
	Status   *Status `json:"status,omitempty"`
	// Dropped is the total number of records the server has dropped since
	// it started because the monitor was absent or slow.
	Dropped uint64 `json:"dropped,omitempty"`
	// Since, on a dropped message only, is when the sending server's count
	// started: it names one lifetime of the server, so that the station
	// adds the totals of successive lifetimes instead of confusing a
	// restarted server's small count with an old one. Zero from a sender
	// that does not say.
	Since time.Time `json:"since,omitzero"`
}

// Status is the state of the security server that the monitoring station
// shows beside the exchange statistics (2.6).
type Status struct {
	Time time.Time `json:"time"`
	// Certificates are the server's own certificates and their expiry.
	Certificates []CertStatus `json:"certificates,omitempty"`
	// GlobalConf is the configuration in use; zero when none is loaded.
	GlobalConfSerial  uint64    `json:"globalConfSerial,omitempty"`
	GlobalConfIssued  time.Time `json:"globalConfIssued,omitzero"`
	GlobalConfExpires time.Time `json:"globalConfExpires,omitzero"`
	// TimestampLag is how long the oldest record not yet time-stamped has
	// waited; zero when all are stamped.
	TimestampLag time.Duration `json:"timestampLag,omitempty"`
	// MessageLogFault names the damaged entry the last check of the live
	// message log found, and why (2.2.2, 6.3); empty when it verified.
	MessageLogFault string `json:"messageLogFault,omitempty"`
	// Links are the network interfaces (5.5).
	Links []LinkStatus `json:"links,omitempty"`
}

// CertStatus is one certificate of the server.
type CertStatus struct {
	Purpose  string    `json:"purpose"` // "signing", "authentication"
	Subject  string    `json:"subject"`
	NotAfter time.Time `json:"notAfter"`
}

// LinkStatus is one network interface in a role.
type LinkStatus struct {
	Role       string `json:"role"` // "internal", "external"
	Name       string `json:"name"`
	Up         bool   `json:"up"`
	SpeedMbps  int    `json:"speedMbps"`
	FullDuplex bool   `json:"fullDuplex"`
}

// Fault codes under which a record counts a fault that the provider's
// information system answered with itself. Its faultcode is text of the
// message, which the monitor must not see (2.7), so only its class
// travels: Client (the request was wrong) or Server.
const (
	FaultServiceClient = "Client.ServiceFault"
	FaultServiceServer = "Server.ServiceFault"
)

// faultCodes are the only fault codes a Record may carry: the security
// server's own stable codes and the two classes of a service's own fault.
var faultCodes = func() map[string]bool {
	m := map[string]bool{FaultServiceClient: true, FaultServiceServer: true}
	for _, c := range soap.Codes() {
		m[c] = true
	}
	return m
}()

// FaultCode returns the code a Record carries for a fault with code c: c
// itself when it is one of the security server's stable codes (package
// soap), else the class of a service's own fault, FaultServiceClient or
// FaultServiceServer. An empty c stays empty.
func FaultCode(c string) string {
	switch {
	case c == "" || faultCodes[c]:
		return c
	case c == "Client" || strings.HasPrefix(c, "Client."):
		return FaultServiceClient
	}
	return FaultServiceServer
}

var (
	reMessageID = regexp.MustCompile(`^[\x21-\x7e]{1,128}$`)
	// reIfName: Linux interface names are at most 15 bytes (IFNAMSIZ).
	reIfName = regexp.MustCompile(`^[\x21-\x7e]{1,15}$`)
)

// Validate reports an error if any field of m is out of its bounds: an
// identifier that does not parse, a message id or code of the wrong form.
func (m *Message) Validate() error {
	switch m.Type {
	case TypeExchange:
		if !m.Since.IsZero() {
			return errors.New("only a dropped message carries since")
		}
		if m.Exchange == nil || m.Status != nil {
			return errors.New("exchange message needs exactly the exchange field")
		}
		return m.Exchange.validate()
	case TypeStatus:
		if !m.Since.IsZero() {
			return errors.New("only a dropped message carries since")
		}
		if m.Status == nil || m.Exchange != nil {
			return errors.New("status message needs exactly the status field")
		}
		return m.Status.validate()
	case TypeDropped:
		if m.Exchange != nil || m.Status != nil {
			return errors.New("dropped message carries only the count")
		}
		return nil
	}
	return fmt.Errorf("unknown message type %q", m.Type)
}

func (r *Record) validate() error {
	if r.Role != RoleClient && r.Role != RoleProvider {
		return fmt.Errorf("role %q is neither client nor provider", r.Role)
	}
	if !reMessageID.MatchString(r.MessageID) {
		return errors.New("message id must be 1-128 printable ASCII characters")
	}
	if _, err := ident.ParseClient(r.Client); err != nil {
		return err
	}
	if r.Service != "" {
		if _, err := ident.ParseService(r.Service); err != nil {
			return err
		}
	}
	if r.Result != ResultOK && r.Result != ResultFault {
		return fmt.Errorf("result %q is neither ok nor fault", r.Result)
	}
	if r.FaultCode != "" && !faultCodes[r.FaultCode] {
		return fmt.Errorf("fault code %q is neither a stable code of the security server "+
			"nor %s or %s", r.FaultCode, FaultServiceClient, FaultServiceServer)
	}
	if r.RequestBytes < 0 || r.ResponseBytes < 0 {
		return errors.New("negative size")
	}
	return nil
}

// Status fields are few words from closed sets, an interface name, and
// the subject of one of the server's own certificates: a distinguished
// name, printable and bounded (2.7).
func (s *Status) validate() error {
	if len(s.Certificates) > 8 || len(s.Links) > 8 {
		return errors.New("status lists more than 8 certificates or links")
	}
	for _, c := range s.Certificates {
		if c.Purpose != "signing" && c.Purpose != "authentication" {
			return fmt.Errorf("certificate purpose %q is neither signing nor "+
				"authentication", c.Purpose)
		}
		if len(c.Subject) > 256 || !utf8.ValidString(c.Subject) ||
			strings.ContainsFunc(c.Subject, unicode.IsControl) {
			return errors.New("certificate subject is over 256 bytes or not printable text")
		}
	}
	for _, l := range s.Links {
		if l.Role != "internal" && l.Role != "external" {
			return fmt.Errorf("link role %q is neither internal nor external", l.Role)
		}
		if !reIfName.MatchString(l.Name) {
			return errors.New("link name is not a network interface name")
		}
	}
	return nil
}

// Encoder writes Messages as JSON lines.
type Encoder struct{ w io.Writer }

// NewEncoder returns an Encoder writing to w.
func NewEncoder(w io.Writer) *Encoder { return &Encoder{w: w} }

// Encode writes one validated message and a newline.
func (e *Encoder) Encode(m *Message) error {
	if err := m.Validate(); err != nil {
		return fmt.Errorf("refusing to send invalid monitoring message: %w", err)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(b) >= MaxLine {
		return fmt.Errorf("monitoring message of %d bytes exceeds %d", len(b), MaxLine)
	}
	_, err = e.w.Write(append(b, '\n'))
	return err
}

// Decoder reads JSON-line Messages, refusing unknown fields, lines longer
// than MaxLine and messages that do not validate.
type Decoder struct{ s *bufio.Scanner }

// NewDecoder returns a Decoder reading from r.
func NewDecoder(r io.Reader) *Decoder {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 0, 1024), MaxLine)
	return &Decoder{s: s}
}

// Decode reads the next message. It returns io.EOF at the end of input.
func (d *Decoder) Decode() (*Message, error) {
	if !d.s.Scan() {
		if err := d.s.Err(); err != nil {
			return nil, fmt.Errorf("read monitoring socket: %w", err)
		}
		return nil, io.EOF
	}
	dec := json.NewDecoder(bytes.NewReader(d.s.Bytes()))
	dec.DisallowUnknownFields()
	var m Message
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("monitoring message is not valid JSON of the known form: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("monitoring message refused: %w", err)
	}
	return &m, nil
}
