// Package cms encodes and verifies CMS SignedData (RFC 5652) with ECDSA
// P-256 and SHA-256: detached over a message, or encapsulating content
// such as an RFC 3161 TSTInfo.
//
// The security server signs every message it sends (clause 2.2.1) with the
// certificate the portal's certification centre issued to its member
// (clauses 2.3, 6.3). This package is the cryptographic half of that: it
// writes and checks the SignedData structure. Package sign wraps it in
// multipart/signed and checks the certificate chain and the member.
//
// # What is written
//
// Sign writes one SignerInfo with the signed attributes contentType,
// messageDigest, signingTime (when asked) and ESS signingCertificateV2
// (RFC 5035, when asked; RFC 3161 time stamps need it), the signer's
// certificate and its chain, and stapled OCSP responses as
// RevocationInfoChoice other with id-ri-ocsp-response (RFC 5940). The
// output is DER; `openssl cms -verify` accepts it.
//
// # What is accepted
//
// Verify is strict: DER lengths only, no trailing data, at most
// MaxSignedDataSize bytes, exactly one SignerInfo, signed attributes
// required, SHA-256 digests and ECDSA signatures only. It checks the
// messageDigest and contentType attributes and the signature, but not the
// certificate chain: the caller does that with its own roots and time.
package cms

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/qapi-az/qapi/appliance/ecverify"
	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Object identifiers used by callers.
var (
	// OIDData is id-data, the content type of an arbitrary octet string.
	OIDData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	// OIDTSTInfo is id-ct-TSTInfo, the content type of an RFC 3161 time
	// stamp token's TSTInfo.
	OIDTSTInfo = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 4}
	// OIDSignedData is id-signedData, the content type of the ContentInfo
	// that Sign returns.
	OIDSignedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	// OIDOCSPResponse is id-ri-ocsp-response (RFC 5940), the
	// otherRevInfoFormat under which OCSP responses are stapled.
	OIDOCSPResponse = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 16, 2}
)

var (
	oidAttrContentType   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	oidAttrMessageDigest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	oidAttrSigningTime   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 5}
	oidAttrSigningCertV2 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 47}
	oidSHA256            = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidECDSAWithSHA256   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECPublicKey       = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
)

// MaxSignedDataSize is the largest DER ContentInfo that Verify parses. It
// is far above what the exchange produces (a certificate chain, an OCSP
// response and at most a time stamp's TSTInfo) and keeps a hostile peer
// from making the parser walk megabytes.
const MaxSignedDataSize = 256 << 10

// Bounds on repeated elements that Verify accepts.
const (
	maxCertificates = 16
	maxRevocation   = 16
	maxAttributes   = 32
	maxDigestAlgs   = 8
)

// ErrMalformed is wrapped by every Verify error about the encoding: the
// input is not a DER SignedData that this package accepts.
var ErrMalformed = errors.New("malformed CMS SignedData")

// ErrVerification is wrapped by every Verify error about the content: the
// SignedData parsed but the digest, the attributes, the signer or the
// signature did not check out.
var ErrVerification = errors.New("CMS signature verification failed")

// SignOptions says what to sign and how.
type SignOptions struct {
	// ContentType is the eContentType (OIDData when nil).
	ContentType asn1.ObjectIdentifier
	// Detached leaves the content out of the SignedData.
	Detached bool
	// SigningTime is put in the signingTime signed attribute when not zero,
	// in UTC with a resolution of one second.
	SigningTime time.Time
	// Certificates are included after the signer's (intermediates).
	Certificates []*x509.Certificate
	// OCSP responses (DER) to include as RevocationInfoChoice other
	// (id-ri-ocsp-response, RFC 5940).
	OCSP [][]byte
	// SigningCertificateV2 adds the ESS signing-certificate-v2 attribute
	// (needed for RFC 3161 tokens).
	SigningCertificateV2 bool
	// SubjectKeyID names the signer by its certificate's subject key
	// identifier instead of its issuer and serial number. The certificate
	// must have the extension.
	SubjectKeyID bool
}

// Sign returns the DER ContentInfo of a SignedData over content, signed by
// key, whose certificate cert must carry key's public key. The key must be
// an ECDSA P-256 key (a *ecdsa.PrivateKey or a TPM-backed crypto.Signer
// returning ASN.1 signatures). Sign checks the signature a signer other
// than a *ecdsa.PrivateKey made before returning it, so that a faulty TPM
// or key store is caught here rather than by the peer.
func Sign(content []byte, key crypto.Signer, cert *x509.Certificate,
	opts SignOptions) ([]byte, error) {
	if key == nil || cert == nil {
		return nil, errors.New("cms: sign: a key and its certificate are required")
	}
	pub, ok := key.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("cms: sign: key is %T, want an ECDSA P-256 key", key.Public())
	}
	if !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("cms: sign: key does not match the certificate of %q",
			cert.Subject)
	}
	if opts.SubjectKeyID && len(cert.SubjectKeyId) == 0 {
		return nil, fmt.Errorf("cms: sign: certificate of %q has no subject key identifier",
			cert.Subject)
	}
	ct := opts.ContentType
	if ct == nil {
		ct = OIDData
	}
	for i, resp := range opts.OCSP {
		s := cryptobyte.String(resp)
		var elem cryptobyte.String
		if !s.ReadASN1Element(&elem, casn1.SEQUENCE) || !s.Empty() {
			return nil, fmt.Errorf("cms: sign: OCSP response %d is not one DER SEQUENCE", i)
		}
	}

	digest := sha256.Sum256(content)
	attrs, err := signedAttributes(ct, digest[:], cert, opts)
	if err != nil {
		return nil, fmt.Errorf("cms: sign: %w", err)
	}
	// RFC 5652, 5.4: the signature covers the DER SET OF the attributes,
	// with the SET tag rather than the [0] IMPLICIT tag they travel under.
	toSign := slices.Concat([]byte{0x31}, attrs[1:])
	h := sha256.Sum256(toSign)
	sig, err := key.Sign(rand.Reader, h[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("cms: sign: signing key failed: %w", err)
	}
	// A *ecdsa.PrivateKey signs with the standard library's own P-256 code;
	// checking its output would double the cost of signing for nothing a
	// peer's verification does not catch anyway. Other signers are devices
	// and key stores whose faults are worth naming here.
	if _, software := key.(*ecdsa.PrivateKey); !software &&
		!ecverify.VerifyASN1(pub, h[:], sig) {
		return nil, errors.New("cms: sign: the signing key produced a signature that " +
			"does not verify; check the key store or TPM")
	}

	version := int64(1)
	if !ct.Equal(OIDData) || opts.SubjectKeyID {
		version = 3
	}
	if len(opts.OCSP) > 0 {
		// RFC 5652, 5.1: other revocation information makes it version 5.
		version = 5
	}
	// The builder starts with room for all it writes: growing as it goes
	// copied the certificates and responses several times over.
	size := 256 + len(cert.Raw) + len(attrs) + len(sig)
	for _, c := range opts.Certificates {
		if c != nil {
			size += len(c.Raw)
		}
	}
	for _, resp := range opts.OCSP {
		size += 32 + len(resp)
	}
	if !opts.Detached {
		size += len(content)
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, size))
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(OIDSignedData)
		b.AddASN1(explicit(0), func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(version)
				b.AddASN1(casn1.SET, func(b *cryptobyte.Builder) {
					addAlgorithm(b, oidSHA256)
				})
				b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(ct)
					if !opts.Detached {
						b.AddASN1(explicit(0), func(b *cryptobyte.Builder) {
							b.AddASN1OctetString(content)
						})
					}
				})
				b.AddASN1(explicit(0), func(b *cryptobyte.Builder) {
					b.AddBytes(cert.Raw)
					for _, c := range opts.Certificates {
						if c != nil && !c.Equal(cert) {
							b.AddBytes(c.Raw)
						}
					}
				})
				if len(opts.OCSP) > 0 {
					b.AddASN1(explicit(1), func(b *cryptobyte.Builder) {
						for _, resp := range opts.OCSP {
							b.AddASN1(explicit(1), func(b *cryptobyte.Builder) {
								b.AddASN1ObjectIdentifier(OIDOCSPResponse)
								b.AddBytes(resp)
							})
						}
					})
				}
				b.AddASN1(casn1.SET, func(b *cryptobyte.Builder) {
					b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
						if opts.SubjectKeyID {
							b.AddASN1Int64(3)
							b.AddASN1(casn1.Tag(0).ContextSpecific(),
								func(b *cryptobyte.Builder) { b.AddBytes(cert.SubjectKeyId) })
						} else {
							b.AddASN1Int64(1)
							addIssuerAndSerial(b, cert)
						}
						addAlgorithm(b, oidSHA256)
						b.AddBytes(attrs)
						addAlgorithm(b, oidECDSAWithSHA256)
						b.AddASN1OctetString(sig)
					})
				})
			})
		})
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("cms: sign: encoding SignedData: %w", err)
	}
	return der, nil
}

// signedAttributes returns the DER [0] IMPLICIT SET OF Attribute, sorted
// as DER requires of a SET OF (RFC 5652, 5.3 wants them DER-encoded).
func signedAttributes(ct asn1.ObjectIdentifier, digest []byte, cert *x509.Certificate,
	opts SignOptions) ([]byte, error) {
	var encoded [][]byte
	add := func(oid asn1.ObjectIdentifier, value func(*cryptobyte.Builder)) error {
		var b cryptobyte.Builder
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid)
			b.AddASN1(casn1.SET, value)
		})
		der, err := b.Bytes()
		if err != nil {
			return fmt.Errorf("encoding attribute %v: %w", oid, err)
		}
		encoded = append(encoded, der)
		return nil
	}

	if err := add(oidAttrContentType, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(ct)
	}); err != nil {
		return nil, err
	}
	if err := add(oidAttrMessageDigest, func(b *cryptobyte.Builder) {
		b.AddASN1OctetString(digest)
	}); err != nil {
		return nil, err
	}
	if !opts.SigningTime.IsZero() {
		t := opts.SigningTime.UTC()
		if err := add(oidAttrSigningTime, func(b *cryptobyte.Builder) {
			// RFC 5652, 11.3: UTCTime for 1950 to 2049, GeneralizedTime
			// otherwise.
			if t.Year() >= 1950 && t.Year() < 2050 {
				b.AddASN1UTCTime(t)
			} else {
				b.AddASN1GeneralizedTime(t)
			}
		}); err != nil {
			return nil, err
		}
	}
	if opts.SigningCertificateV2 {
		certHash := sha256.Sum256(cert.Raw)
		if err := add(oidAttrSigningCertV2, func(b *cryptobyte.Builder) {
			// SigningCertificateV2 ::= SEQUENCE { certs SEQUENCE OF
			// ESSCertIDv2 }; hashAlgorithm is left out, its DEFAULT being
			// SHA-256 (RFC 5035, 4).
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1OctetString(certHash[:])
						addIssuerSerial(b, cert)
					})
				})
			})
		}); err != nil {
			return nil, err
		}
	}

	slices.SortFunc(encoded, bytes.Compare)
	var b cryptobyte.Builder
	b.AddASN1(casn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
		for _, a := range encoded {
			b.AddBytes(a)
		}
	})
	return b.Bytes()
}

// explicit returns the constructed context-specific tag [n].
func explicit(n uint8) casn1.Tag { return casn1.Tag(n).ContextSpecific().Constructed() }

// addAlgorithm writes an AlgorithmIdentifier with absent parameters, as
// RFC 5754 (SHA-256) and RFC 5758 (ECDSA) ask.
func addAlgorithm(b *cryptobyte.Builder, oid asn1.ObjectIdentifier) {
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
	})
}

// addIssuerAndSerial writes IssuerAndSerialNumber (RFC 5652, 10.2.4).
func addIssuerAndSerial(b *cryptobyte.Builder, cert *x509.Certificate) {
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(cert.RawIssuer)
		b.AddASN1BigInt(cert.SerialNumber)
	})
}

// addIssuerSerial writes the ESS IssuerSerial (RFC 5035): the issuer as a
// GeneralNames holding one directoryName, and the serial number.
func addIssuerSerial(b *cryptobyte.Builder, cert *x509.Certificate) {
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(explicit(4), func(b *cryptobyte.Builder) {
				b.AddBytes(cert.RawIssuer)
			})
		})
		b.AddASN1BigInt(cert.SerialNumber)
	})
}
