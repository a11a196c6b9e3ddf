package soap

import (
	"encoding/xml"
	"errors"

	"github.com/qapi-az/qapi/appliance/ident"
)

// Namespaces of the X-Road message protocol 4.0 and SOAP 1.1.
const (
	NSEnvelope    = "http://schemas.xmlsoap.org/soap/envelope/"
	NSXRoad       = "http://x-road.eu/xsd/xroad.xsd"
	NSIdentifiers = "http://x-road.eu/xsd/identifiers"
)

// ProtocolVersion is the only protocolVersion header accepted.
const ProtocolVersion = "4.0"

// Digest algorithm URIs of XML-DSig, as the requestHash algorithmId names
// them.
const (
	AlgSHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
	AlgSHA512 = "http://www.w3.org/2001/04/xmlenc#sha512"
)

// RequestHash is the requestHash header of a response: the digest of the
// exact bytes of the request SOAP message.
type RequestHash struct {
	Algorithm string // an XML digest algorithm URI; SHA-256 here
	Value     []byte
}

// Header is the X-Road header block.
type Header struct {
	Client          ident.Client
	Service         ident.Service
	ID              string
	UserID          string
	Issue           string
	ProtocolVersion string
	RequestHash     *RequestHash // responses only
}

// Message is a parsed SOAP message. Raw is the exact bytes parsed; nothing
// in this package re-serialises a message that is passed on.
type Message struct {
	Header Header
	// Body is the name of the first child element of soap:Body.
	Body xml.Name
	// Fault is set when the body is a soap:Fault.
	Fault *Fault
	Raw   []byte

	// hashEdit is where WithRequestHash puts the requestHash of a response
	// that ParseResponse returned; nil for other messages.
	hashEdit *headerEdit
}

// Limits bound what the parser accepts. A zero field takes its value from
// DefaultLimits.
type Limits struct {
	// MaxBytes is the largest message accepted (clause 5.2: 10 KB).
	MaxBytes int
	// MaxDepth is the deepest element nesting accepted.
	MaxDepth int
}

// DefaultLimits returns the limits of clause 5.2: 10 KB (10240 bytes), and
// a nesting depth of 64.
func DefaultLimits() Limits { return Limits{MaxBytes: 10 << 10, MaxDepth: 64} }

// withDefaults fills the zero fields of l from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxBytes <= 0 {
		l.MaxBytes = d.MaxBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = d.MaxDepth
	}
	return l
}

// Fault is a SOAP 1.1 fault with a stable code. It is also the error type
// of this package and of the packages that answer a client with a fault.
type Fault struct {
	Code   string // one of the Code constants, e.g. "Client.SizeExceeded"
	String string // what was wrong and what to do, for a person
	Actor  string
	Detail string // optional; never a message body or a secret
}

var _ error = (*Fault)(nil)

// Error returns the code and the explanation.
func (f *Fault) Error() string { return f.Code + ": " + f.String }

// AsFault returns the *Fault in err's chain, or nil when there is none.
func AsFault(err error) *Fault {
	var f *Fault
	if errors.As(err, &f) {
		return f
	}
	return nil
}

// Stable fault codes. docs/faults.md lists each with its cause and remedy.
// "Client." codes: the request was wrong; "Server." codes: a server failed.
const (
	CodeSizeExceeded     = "Client.SizeExceeded"     // over Limits.MaxBytes (5.2)
	CodeInvalidUTF8      = "Client.InvalidUTF8"      // bytes are not UTF-8
	CodeDTDForbidden     = "Client.DTDForbidden"     // a DOCTYPE or entity
	CodeTooDeep          = "Client.TooDeep"          // nesting past MaxDepth
	CodeMalformed        = "Client.MalformedSOAP"    // not a SOAP 1.1 envelope
	CodeMissingHeader    = "Client.MissingHeader"    // a required header absent
	CodeDuplicateHeader  = "Client.DuplicateHeader"  // a header twice
	CodeBadHeader        = "Client.InvalidHeader"    // a header malformed
	CodeProtocolVersion  = "Client.ProtocolVersion"  // protocolVersion != 4.0
	CodeServiceMismatch  = "Client.ServiceMismatch"  // body element != serviceCode
	CodeUnknownClient    = "Client.UnknownClient"    // client not registered
	CodeUnknownService   = "Client.UnknownService"   // no server serves it
	CodeAccessDenied     = "Client.AccessDenied"     // no access right (2.2.3)
	CodeBlocked          = "Client.Blocked"          // participant blocked (3.7)
	CodeReplay           = "Client.Replay"           // message id seen (6.2.4)
	CodeSigningTime      = "Client.SigningTime"      // outside the window (6.2.4)
	CodeBadSignature     = "Client.InvalidSignature" // CMS does not verify (2.2.1)
	CodeBadCertificate   = "Client.InvalidCertificate"
	CodeSignerMismatch   = "Client.SignerMismatch"  // signer is not the client/provider
	CodeRequestHash      = "Server.RequestHash"     // response hash != request
	CodeStaleConf        = "Server.StaleGlobalConf" // configuration expired
	CodeProviderDown     = "Server.ProviderUnreachable"
	CodeProviderFault    = "Server.ProviderFault" // provider's IS answered badly
	CodeLogFailure       = "Server.MessageLogFailure"
	CodeTimestampFailure = "Server.TimestampFailure"
	CodeInternal         = "Server.Internal"
)

// CodeDisconnected is the stable code for a call of a service whose
// announced disconnection date has passed (3.14).
const CodeDisconnected = "Client.ServiceDisconnected"

// Codes returns every stable fault code, in the order of their
// declaration. A code is never renamed or reused: callers branch on it.
func Codes() []string {
	return []string{
		CodeSizeExceeded, CodeInvalidUTF8, CodeDTDForbidden, CodeTooDeep,
		CodeMalformed, CodeMissingHeader, CodeDuplicateHeader, CodeBadHeader,
		CodeProtocolVersion, CodeServiceMismatch, CodeUnknownClient,
		CodeUnknownService, CodeAccessDenied, CodeBlocked, CodeDisconnected, CodeReplay,
		CodeSigningTime, CodeBadSignature, CodeBadCertificate, CodeSignerMismatch,
		CodeRequestHash, CodeStaleConf, CodeProviderDown, CodeProviderFault,
		CodeLogFailure, CodeTimestampFailure, CodeInternal,
	}
}
