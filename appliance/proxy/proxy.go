// Package proxy is the security server's exchange path: the client-side
// proxy, which takes SOAP requests from the member's information systems and
// carries them, signed, to the provider's security server; and the
// server-side proxy, which takes signed requests from other security servers,
// checks them, and passes them to the provider's information system.
//
// # What each side guarantees
//
// The client proxy refuses a request before it leaves the server unless the
// client is one this server serves, registered in and not blocked by the
// global configuration (3.7), the service is not disconnected (3.14), and
// the configuration is fresh. It signs with
// the member's signing key (2.2.1), logs the signed request before sending
// it (2.2.2), talks only TLS 1.3 to a security server whose authentication
// certificate is pinned in the global configuration for the provider
// (2.2.4), verifies the signed response, checks that its requestHash binds
// it to the request, and logs the response before the information system
// sees it.
//
// The server proxy passes nothing to the provider's information system
// unless the calling server's certificate is pinned and registered for the
// client, the signature verifies as the client's member's (2.2.1), neither
// party is blocked (3.7), the service is not disconnected (3.14), the
// message id is new and the signing time recent (6.2.4), and the client
// holds an access right to the service (2.2.3, 6.7); and it releases no
// response that is not in the message log.
//
// Every refusal is a SOAP 1.1 fault with HTTP status 500 and one of the
// stable codes of package soap; its text says what was wrong.
//
// # Notices
//
// When the global configuration holds an end-of-life (3.12) or
// disconnection (3.14) notice on the service called, the client proxy adds
// a NoticeHeader per notice to its HTTP response; the SOAP message is
// left as it is.
//
// # Meta-services
//
// As users of the X-Road message protocol 4.0 expect: GET /listClients on
// the client proxy lists the members and subsystems of the global
// configuration; listMethods, allowedMethods and getWsdl are answered by the
// provider's security server from its configuration; getWsdl only for a
// service the client has an access right to. Between the servers,
// getWsdl carries the WSDL base64-encoded in a wsdl element of the signed
// response body; the client proxy hands it to the information system as
// X-Road does, multipart/related with the WSDL as the second part. For code
// generators the client proxy also serves GET /wsdl?client=CLIENT&service=
// SERVICE, which returns the WSDL itself with its endpoint set to the client
// proxy. listClients answers JSON when the request accepts application/json.
package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/qapi-az/qapi/appliance/acl"
	"github.com/qapi-az/qapi/appliance/events"
	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/messagelog"
	"github.com/qapi-az/qapi/appliance/replay"
	"github.com/qapi-az/qapi/appliance/sign"
	"github.com/qapi-az/qapi/appliance/soap"
)

// MessageLog is where both proxies archive what they exchange;
// *messagelog.Log implements it. Append must return only once the records
// are durable.
type MessageLog interface {
	Append(ctx context.Context, recs ...messagelog.Record) error
}

// Meta-service codes (X-Road service metadata protocol).
const (
	MetaListMethods    = "listMethods"
	MetaAllowedMethods = "allowedMethods"
	MetaGetWsdl        = "getWsdl"
)

// IsMeta reports whether code names a meta-service, which the provider's
// security server answers itself and which every registered client may
// call; getWsdl then shows only the WSDL of a service the client may call.
func IsMeta(code string) bool {
	return code == MetaListMethods || code == MetaAllowedMethods || code == MetaGetWsdl
}

// Defaults of Config fields left zero.
const (
	DefaultResponseMaxBytes = 1 << 20
	DefaultTimeout          = 30 * time.Second
	DefaultMaxConcurrent    = 64
	// SignatureOverhead is what a multipart/signed body may add to the SOAP
	// message it carries: the CMS signature, certificates and the stapled
	// OCSP response.
	SignatureOverhead = 32 << 10
)

// writeBufferSize is the write buffer of the proxies' HTTP connections to
// the provider's server and to information systems: large enough for a
// signed 10 KB request (clause 5.2) with its headers, so that a request
// goes out in one write, without the copy buffer net/http allocates for a
// body that overflows the default 4 KiB.
const writeBufferSize = 32 << 10

// Config is what the proxies need. Fields marked required must be set.
type Config struct {
	// Clients are the members and subsystems this server serves: the
	// clients its information systems may send as, and the providers whose
	// services it answers. Required.
	Clients []ident.Client
	// Source gives the global configuration. Required.
	Source globalconf.Source
	// Signers holds the signing key and certificate of each member served,
	// keyed by member (SubsystemCode empty). Required.
	Signers map[ident.Client]*sign.Signer
	// AuthCert is the server's authentication certificate and key for TLS
	// between security servers (4.1.2.6). Required.
	AuthCert tls.Certificate
	// Log archives the signed messages (2.2.2). Required.
	Log MessageLog
	// Events receives one record per exchange; events.Discard when nil.
	Events events.Sink

	// ACL holds the access rights (server side). Required for ServerProxy.
	ACL *acl.Store
	// Replay refuses replayed requests (server side). Required for
	// ServerProxy.
	Replay *replay.Store
	// Services says where the provider's information systems answer
	// (server side).
	Services []Service

	// Limits bound a request (clause 5.2); soap.DefaultLimits when zero.
	Limits soap.Limits
	// ResponseMaxBytes bounds a response; DefaultResponseMaxBytes when zero.
	ResponseMaxBytes int
	// Timeout bounds the wait for the next hop; DefaultTimeout when zero.
	Timeout time.Duration
	// MaxConcurrent bounds the exchanges each proxy works on at once;
	// further requests wait their turn. It bounds the server's memory.
	// DefaultMaxConcurrent when zero; no bound when negative.
	MaxConcurrent int
	// ISCerts pins information systems' TLS client certificates, by hex
	// SHA-256 of the DER, to the client each may send as. A client named
	// here is accepted only over TLS with one of its certificates.
	ISCerts map[string]ident.Client
	// CheckOCSP, when set, judges the signer's stapled OCSP response.
	CheckOCSP func(cert, issuer *x509.Certificate, ocsp []byte) error
	// Refused, when set, is told of every exchange this proxy refuses
	// itself, with its completed record and the fault it answered; not of
	// faults that the provider's server or information system answered and
	// the client proxy passed on. The security server reports the security
	// events among them to the operator (6.8). It must not block.
	Refused func(rec events.Record, f *soap.Fault)
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

func (c *Config) setDefaults() error {
	if len(c.Clients) == 0 {
		return errors.New("proxy configuration serves no clients; name at least one " +
			"member or subsystem")
	}
	if c.Source == nil || c.Log == nil || len(c.Signers) == 0 {
		return errors.New("proxy configuration needs a global configuration source, " +
			"a message log and a signing key")
	}
	if len(c.AuthCert.Certificate) == 0 {
		return errors.New("proxy configuration needs an authentication certificate")
	}
	if c.Events == nil {
		c.Events = events.Discard
	}
	if c.Limits.MaxBytes == 0 {
		c.Limits = soap.DefaultLimits()
	}
	if c.ResponseMaxBytes == 0 {
		c.ResponseMaxBytes = DefaultResponseMaxBytes
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = DefaultMaxConcurrent
	}
	return nil
}

// limiter bounds the exchanges under way; nil bounds nothing.
type limiter chan struct{}

func newLimiter(n int) limiter {
	if n <= 0 {
		return nil
	}
	return make(limiter, n)
}

// acquire waits for a turn and reports whether it got one before ctx
// ended (the caller gave up).
func (l limiter) acquire(ctx context.Context) bool {
	if l == nil {
		return true
	}
	select {
	case l <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (l limiter) release() {
	if l != nil {
		<-l
	}
}

func (c *Config) serves(client ident.Client) bool {
	for _, x := range c.Clients {
		if x == client {
			return true
		}
	}
	return false
}

func (c *Config) responseLimits() soap.Limits {
	l := c.Limits
	l.MaxBytes = c.ResponseMaxBytes
	return l
}

// Service says where a provider's information system answers one service
// (Code set) or every service of the provider without an entry of its own
// (Code empty).
type Service struct {
	Provider ident.Client
	Code     string
	// URL is the information system's http or https endpoint.
	URL string
	// WSDL is the URL of the service's WSDL, for getWsdl; may be empty.
	WSDL string
	// Client carries the requests (its TLS configuration may hold a client
	// certificate for the information system); a shared client when nil.
	Client *http.Client
}

// noRedirect is the CheckRedirect of every HTTP client of the proxies: a
// message goes only where the configuration says, so a 3xx answer is
// taken as the answer itself (and refused as not SOAP).
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// fault builds a *soap.Fault.
func fault(code, format string, args ...any) *soap.Fault {
	return &soap.Fault{Code: code, String: fmt.Sprintf(format, args...)}
}

// asFault returns err as a *soap.Fault, or a fault of code wrapping its text.
func asFault(err error, code string) *soap.Fault {
	var f *soap.Fault
	if errors.As(err, &f) {
		return f
	}
	return fault(code, "%v", err)
}

// poolCache keeps the CA pool of the newest global configuration seen, so
// that the certificates are parsed once per configuration version rather
// than once per message.
type poolCache struct {
	cur atomic.Pointer[cachedPool]
}

type cachedPool struct {
	conf *globalconf.Conf
	pool *x509.CertPool
}

// roots returns conf's CA pool.
func (c *poolCache) roots(conf *globalconf.Conf) (*x509.CertPool, error) {
	if p := c.cur.Load(); p != nil && p.conf == conf {
		return p.pool, nil
	}
	pool, err := conf.CAPool()
	if err != nil {
		return nil, err
	}
	c.cur.Store(&cachedPool{conf: conf, pool: pool})
	return pool, nil
}

// disconnected is the fault for a call of a service disconnected on its
// announced date (3.14), or nil.
func disconnected(conf *globalconf.Conf, svc ident.Service, now time.Time) *soap.Fault {
	d, ok := conf.Disconnection(svc, now)
	if !ok {
		return nil
	}
	return fault(soap.CodeDisconnected, "service %s was disconnected on %s, as announced "+
		"under clause 3.14; use the replacement its provider announced", d.Service,
		d.Since.UTC().Format(time.RFC3339))
}

// logFault is the fault for a message the log could not store: the
// message is then neither sent nor released (2.2.2).
func logFault(err error, what string) *soap.Fault {
	if errors.Is(err, messagelog.ErrTimestampFailure) {
		return fault(soap.CodeTimestampFailure, "the message log cannot time-stamp its "+
			"records, so the %s was not passed on: %v; check that the server reaches the "+
			"time-stamping authority", what, err)
	}
	return fault(soap.CodeLogFailure, "the message log could not store the %s, so it was "+
		"not passed on: %v", what, err)
}

// writeFault answers f as HTTP 500 with a SOAP 1.1 fault envelope.
func writeFault(w http.ResponseWriter, f *soap.Fault, hdr *soap.Header) {
	writeBody(w, http.StatusInternalServerError, "text/xml; charset=utf-8", f.Envelope(hdr))
}

// writeBody answers body with status and Content-Type ct. It states the
// Content-Length, which net/http leaves out of a body over its buffer and
// sends chunked: the next hop then reads into a buffer of the right size
// instead of growing one.
func writeBody(w http.ResponseWriter, status int, ct string, body []byte) {
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}
