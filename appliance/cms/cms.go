// Package cms encodes and verifies CMS SignedData (RFC 5652) with ECDSA
// P-256 and SHA-256: detached over a message, or encapsulating content
// such as an RFC 3161 TSTInfo.
//
// CONTRACT STUB: the signatures below are agreed between packages; the
// owner of this package replaces the bodies and this paragraph.
package cms

import (
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"time"
)

// Object identifiers used by callers.
var (
	OIDData    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	OIDTSTInfo = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 4}
)

// SignOptions says what to sign and how.
type SignOptions struct {
	// ContentType is the eContentType (OIDData when nil).
	ContentType asn1.ObjectIdentifier
	// Detached leaves the content out of the SignedData.
	Detached bool
	// SigningTime is put in the signingTime signed attribute when not zero.
	SigningTime time.Time
	// Certificates are included after the signer's (intermediates).
	Certificates []*x509.Certificate
	// OCSP responses (DER) to include as RevocationInfoChoice other
	// (id-ri-ocsp-response, RFC 5940).
	OCSP [][]byte
	// SigningCertificateV2 adds the ESS signing-certificate-v2 attribute
	// (needed for RFC 3161 tokens).
	SigningCertificateV2 bool
}

// Sign returns the DER ContentInfo of a SignedData over content.
func Sign(content []byte, key crypto.Signer, cert *x509.Certificate,
	opts SignOptions) ([]byte, error) {
	panic("contract stub")
}

// Signed is a parsed and cryptographically verified SignedData.
type Signed struct {
	ContentType  asn1.ObjectIdentifier
	Content      []byte // encapsulated or the detached content passed in
	Signer       *x509.Certificate
	Certificates []*x509.Certificate
	SigningTime  time.Time // zero when absent
	OCSP         [][]byte
}

// Verify parses der, checks the signature over content (for detached
// signatures; nil when encapsulated), and returns what was signed. It
// does not check the certificate chain; callers do, with their own roots.
func Verify(der, content []byte) (*Signed, error) { panic("contract stub") }
