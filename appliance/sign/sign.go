// Package sign signs and verifies the messages exchanged between security
// servers (clauses 2.2.1, 2.3): multipart/signed (RFC 1847) holding the
// SOAP message byte for byte and a detached CMS SignedData over it.
//
// CONTRACT STUB: the signatures below are agreed between packages; the
// owner of this package replaces the bodies and this paragraph.
package sign

import (
	"crypto"
	"crypto/x509"
	"time"

	"github.com/qapi-az/qapi/appliance/ident"
)

// Signer signs outgoing messages with the member's signing key.
type Signer struct {
	Key   crypto.Signer
	Cert  *x509.Certificate
	Chain []*x509.Certificate // intermediates, may be empty
	// OCSP returns a fresh DER OCSP response for Cert to staple; nil
	// means staple nothing.
	OCSP func() ([]byte, error)
}

// Sign returns the multipart/signed body for soap and its Content-Type
// header value.
func (s *Signer) Sign(soap []byte, now time.Time) (body []byte, contentType string,
	err error) {
	panic("contract stub")
}

// VerifyOptions say what a verified message must satisfy.
type VerifyOptions struct {
	Roots *x509.CertPool // CAs trusted by the global configuration
	Now   time.Time
	// Member is who must have signed: the client's member for requests,
	// the provider's member for responses (2.2.1).
	Member ident.Client
	// MaxBytes bounds the whole multipart body.
	MaxBytes int
	// CheckOCSP, when set, is given the signer, its issuer and the
	// stapled OCSP response (nil if none) and returns an error to refuse.
	CheckOCSP func(cert, issuer *x509.Certificate, ocsp []byte) error
}

// Verified is a message whose signature, chain and signer checked out.
type Verified struct {
	SOAP        []byte // the exact SOAP bytes signed
	Signer      *x509.Certificate
	SigningTime time.Time
	OCSP        []byte
}

// Verify checks body (of the given Content-Type) and returns the SOAP
// message inside. Its errors are *soap.Fault values with the codes
// CodeBadSignature, CodeBadCertificate, CodeSignerMismatch or
// CodeMalformed.
func Verify(body []byte, contentType string, opts VerifyOptions) (*Verified, error) {
	panic("contract stub")
}
