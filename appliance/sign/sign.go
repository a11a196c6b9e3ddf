// Package sign signs and verifies the messages exchanged between security
// servers (clauses 2.2.1, 2.3): multipart/signed (RFC 1847) holding the
// SOAP message byte for byte and a detached CMS SignedData over it.
//
// # The format
//
// A signed message is the body of an S/MIME signed message (RFC 5751,
// 3.5.3), with every line of the MIME framing ended by CRLF:
//
//	Content-Type: multipart/signed; protocol="application/pkcs7-signature";
//	    micalg=sha-256; boundary="qapi-..."
//
//	--qapi-...
//	Content-Type: text/xml; charset=UTF-8
//	Content-Transfer-Encoding: binary
//
//	<soap:Envelope ...>...</soap:Envelope>
//	--qapi-...
//	Content-Type: application/pkcs7-signature; name="smime.p7s"
//	Content-Transfer-Encoding: base64
//	Content-Disposition: attachment; filename="smime.p7s"
//
//	MIIG...
//	--qapi-...--
//
// The signature covers the first part as a whole MIME entity, its header
// lines included, from the first byte after the opening delimiter line to
// the CRLF before the next delimiter (that CRLF belongs to the delimiter,
// RFC 2046, 5.1.1), as RFC 1847 says.
//
// The SOAP part travels as it is (Content-Transfer-Encoding: binary) when
// its bytes are already in the canonical form of RFC 5751, 3.1.1: every
// line ending a CRLF, no bare CR or LF, no NUL. S/MIME tools such as
// `openssl cms -verify` rewrite every line ending of a text entity to CRLF
// before digesting it, which leaves such bytes as they are. Any other SOAP
// message (bare LF line endings, say) travels base64-encoded: a base64
// entity is pure CRLF-ended ASCII, canonical as it stands, and decodes to
// the SOAP bytes exactly as given, at the cost of a third more bytes on
// the wire and in the message log. Either way the signed bytes are the
// SOAP bytes the information system sent; nothing is re-encoded. The
// transport is HTTP, eight-bit clean, so binary needs no 7-bit encoding.
//
// `openssl cms -verify -inform SMIME` accepts these messages. Give it no
// -binary flag: OpenSSL 3.0 in binary mode splits the S/MIME input into
// different bytes than the entity signed and refuses the signature. `openssl smime`, the
// PKCS #7 tool, cannot parse the stapled OCSP response (a CMS version 5
// feature) and refuses them too.
//
// The signature part carries a detached CMS SignedData (package cms) by
// the member's signing key, with the signing time and the OCSP response for
// the signing certificate stapled.
//
// # Verification
//
// Verify parses strictly (CRLF framing, exactly two parts, no preamble,
// bounded size), verifies the CMS signature, builds the signing
// certificate's chain to the trusted CAs at the signing time and now,
// requires the digitalSignature or nonRepudiation key usage, requires that
// the certificate names the expected member, and lets the caller check the
// stapled OCSP response. Every refusal is a *soap.Fault with a stable code.
//
// The chain's signatures are checked once per signing certificate and set
// of trusted CAs (a *x509.CertPool, by identity: a new global
// configuration's pool starts afresh); later messages signed with the same
// certificate reuse the chain built, and have its validity periods, the
// key usage, the member and the OCSP response checked as the first did.
package sign

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/qapi-az/qapi/appliance/cms"
	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/soap"
)

// Media types and names of the format.
const (
	// SignatureType is the media type of the signature part and the
	// protocol parameter of the multipart/signed Content-Type.
	SignatureType = "application/pkcs7-signature"
	// MICAlg is the micalg parameter: SHA-256 (RFC 5751, 3.4.3.2).
	MICAlg = "sha-256"
	// SOAPPartType is the Content-Type of the first part (SOAP 1.1).
	SOAPPartType = "text/xml; charset=UTF-8"
)

// DefaultMaxBytes bounds a signed message when VerifyOptions.MaxBytes is
// not set. A 10 KB request (clause 5.2) grows by a third in base64 and by
// the signature, certificates and OCSP response; 64 KiB leaves room for
// longer chains.
const DefaultMaxBytes = 64 << 10

const (
	base64Line    = 76 // RFC 2045, 6.8: encoded lines are at most 76 characters
	boundaryBytes = 16 // random bytes in a boundary
)

// Signer signs outgoing messages with the member's signing key.
type Signer struct {
	// Key is the member's signing key (keys.Signing, clause 4.1.2.8).
	Key crypto.Signer
	// Cert is the signing certificate the certification centre issued
	// for Key (clause 2.3).
	Cert  *x509.Certificate
	Chain []*x509.Certificate // intermediates, may be empty
	// OCSP returns a fresh DER OCSP response for Cert to staple; nil
	// means staple nothing.
	OCSP func() ([]byte, error)
}

// Sign returns the multipart/signed body for soap and its Content-Type
// header value. The signing time is now. The SOAP bytes are carried
// unchanged; Sign does not parse them. It is safe to call Sign from several
// goroutines if Key and OCSP are.
func (s *Signer) Sign(soap []byte, now time.Time) (body []byte, contentType string,
	err error) {
	if s == nil || s.Key == nil || s.Cert == nil {
		return nil, "", errors.New("sign: the signer has no key or certificate; " +
			"load the member's signing key and certificate first")
	}
	var staple [][]byte
	if s.OCSP != nil {
		resp, err := s.OCSP()
		if err != nil {
			return nil, "", fmt.Errorf("sign: getting the OCSP response to staple: %w", err)
		}
		if resp != nil {
			staple = [][]byte{resp}
		}
	}
	var rnd [boundaryBytes]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, "", fmt.Errorf("sign: making a MIME boundary: %w", err)
	}
	// Base64 has no '-' and no header line written here has "--", so the
	// delimiter cannot occur inside a part but in SOAP bytes sent as they
	// are, which are checked for it.
	boundary := "qapi-" + hex.EncodeToString(rnd[:])
	delim := "--" + boundary
	binary := len(soap) > 0 && canonical(soap) && !bytes.Contains(soap, []byte(delim))

	// The body is built in one buffer, the signed entity in place: its
	// size is known, and the signature's is bounded by what it carries
	// (certificates, OCSP responses) and 1 KiB of attributes, algorithm
	// names and the signature value.
	sigMax := len(s.Cert.Raw) + 1024
	for _, c := range s.Chain {
		sigMax += len(c.Raw)
	}
	for _, r := range staple {
		sigMax += len(r)
	}
	body = make([]byte, 0, 2*len(delim)+soapEntitySize(len(soap), binary)+
		base64.StdEncoding.EncodedLen(sigMax)+sigMax/38+300)
	body = append(body, delim+"\r\n"...)
	start := len(body)
	if binary {
		body = append(body, "Content-Type: "+SOAPPartType+"\r\n"+
			"Content-Transfer-Encoding: binary\r\n\r\n"...)
		body = append(body, soap...)
	} else {
		body = append(body, "Content-Type: "+SOAPPartType+"\r\n"+
			"Content-Transfer-Encoding: base64\r\n\r\n"...)
		body = appendBase64Lines(body, soap)
	}
	entity := body[start:]

	sig, err := cms.Sign(entity, s.Key, s.Cert, cms.SignOptions{
		Detached:     true,
		SigningTime:  now,
		Certificates: s.Chain,
		OCSP:         staple,
	})
	if err != nil {
		return nil, "", fmt.Errorf("sign: %w", err)
	}

	body = append(body, "\r\n"+delim+"\r\n"+
		"Content-Type: "+SignatureType+"; name=\"smime.p7s\"\r\n"+
		"Content-Transfer-Encoding: base64\r\n"+
		"Content-Disposition: attachment; filename=\"smime.p7s\"\r\n\r\n"...)
	body = appendBase64Lines(body, sig)
	body = append(body, "\r\n"+delim+"--\r\n"...)

	contentType = "multipart/signed; protocol=\"" + SignatureType + "\"; micalg=" + MICAlg +
		"; boundary=\"" + boundary + "\""
	return body, contentType, nil
}

// soapEntitySize is the size of the first part for a SOAP message of n
// bytes, sent as it is when binary, else base64-encoded.
func soapEntitySize(n int, binary bool) int {
	if binary {
		return 80 + n
	}
	enc := base64.StdEncoding.EncodedLen(n)
	return 80 + enc + 2*(enc/base64Line+1)
}

// canonical reports whether b is in the canonical form of RFC 5751,
// 3.1.1, as S/MIME readers make it: every CR followed by LF, every LF
// preceded by CR, and no NUL. Such bytes come out of `openssl cms -verify`
// unchanged.
func canonical(b []byte) bool {
	if bytes.IndexByte(b, 0) >= 0 {
		return false
	}
	for i := 0; i < len(b); i++ {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			break
		}
		if i += j; i == 0 || b[i-1] != '\r' {
			return false
		}
	}
	for i := 0; i < len(b); i++ {
		j := bytes.IndexByte(b[i:], '\r')
		if j < 0 {
			break
		}
		if i += j; i+1 == len(b) || b[i+1] != '\n' {
			return false
		}
	}
	return true
}

// appendBase64Lines appends the base64 of data in lines of base64Line
// characters separated by CRLF, with no CRLF after the last line.
func appendBase64Lines(dst, data []byte) []byte {
	enc := base64.StdEncoding
	// Each full line encodes 57 bytes.
	const chunk = base64Line / 4 * 3
	for len(data) > 0 {
		n := min(len(data), chunk)
		dst = enc.AppendEncode(dst, data[:n])
		data = data[n:]
		if len(data) > 0 {
			dst = append(dst, '\r', '\n')
		}
	}
	return dst
}

// VerifyOptions say what a verified message must satisfy.
type VerifyOptions struct {
	Roots *x509.CertPool // CAs trusted by the global configuration
	// Now is the time the certificate chain must be valid at, besides the
	// signing time; the zero value means time.Now().
	Now time.Time
	// Member is who must have signed: the client's member for requests,
	// the provider's member for responses (2.2.1). A subsystem counts as
	// its member: a signing certificate names a member.
	Member ident.Client
	// MaxBytes bounds the whole multipart body (DefaultMaxBytes when zero).
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
	OCSP        []byte // the first stapled OCSP response, nil if none
	// Chain is the verified chain at Now, from Signer to a root.
	Chain []*x509.Certificate
}

// Verify checks body (of the given Content-Type) and returns the SOAP
// message inside. Its errors are *soap.Fault values with the codes
// CodeBadSignature, CodeBadCertificate, CodeSignerMismatch or
// CodeMalformed; CodeSizeExceeded when body is over MaxBytes, and
// CodeInternal when opts lacks Roots or Member.
//
// Verify does not judge how far the signing time is from now (clause
// 6.2.4); the caller does, with Verified.SigningTime.
func Verify(body []byte, contentType string, opts VerifyOptions) (*Verified, error) {
	msg, err := Parse(body, contentType, opts.MaxBytes)
	if err != nil {
		return nil, err
	}
	return msg.Verify(opts)
}

// Message is a multipart/signed body split into its parts, its signature
// not yet checked.
type Message struct {
	// SOAP is the SOAP message of the first part, decoded. Nothing in it
	// may be trusted before Verify has returned nil. When the part was sent
	// as it is, SOAP shares the bytes of the body parsed: neither may be
	// changed while the other is in use.
	SOAP []byte
	mp   *multipart
}

// Parse splits body (of the given Content-Type) as strictly as Verify and
// decodes its SOAP part, without checking the signature: for a receiver to
// learn from the message who must have signed it, then call Verify without
// parsing the body again. maxBytes of zero means DefaultMaxBytes. Its
// errors are *soap.Fault values with the code CodeMalformed, or
// CodeSizeExceeded when body is over maxBytes.
func Parse(body []byte, contentType string, maxBytes int) (*Message, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if len(body) > maxBytes {
		return nil, fault(soap.CodeSizeExceeded, fmt.Sprintf("the signed message is "+
			"%d bytes, over the limit of %d; send a smaller message (clause 5.2)",
			len(body), maxBytes), nil)
	}
	mp, err := parseMultipart(body, contentType)
	if err != nil {
		return nil, fault(soap.CodeMalformed, "the message is not a multipart/signed "+
			"message this server accepts; send the SOAP message and its CMS signature as "+
			"multipart/signed (RFC 1847) with CRLF line endings", err)
	}
	soapBytes, err := mp.soap()
	if err != nil {
		return nil, fault(soap.CodeMalformed, "the SOAP part cannot be decoded; send it "+
			"base64-encoded", err)
	}
	return &Message{SOAP: soapBytes, mp: mp}, nil
}

// Verify checks the message's signature, the signer's certificate and
// member as the function Verify does; opts.MaxBytes is not used, Parse
// applied it. The Verified returned shares m.SOAP.
func (m *Message) Verify(opts VerifyOptions) (*Verified, error) {
	if opts.Roots == nil || opts.Member.IsZero() {
		return nil, fault(soap.CodeInternal, "the security server cannot verify signatures: "+
			"no trusted certification centres or no expected member configured; "+
			"check the global configuration", nil)
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	signed, err := checkSignature(m.mp)
	if err != nil {
		return nil, err
	}

	chain, err := verifyCertificate(signed, now, opts.Roots)
	if err != nil {
		return nil, fault(soap.CodeBadCertificate, "the signing certificate is not valid; "+
			"the sender needs a current signing certificate from a certification centre "+
			"the global configuration trusts (clause 2.3)", err)
	}

	// Clause 2.2.1: the message must be signed by the member it claims to
	// come from.
	signer, server, err := ident.MemberFromCertSerial(signed.Signer.Subject.SerialNumber)
	if err != nil {
		return nil, fault(soap.CodeBadCertificate, "the signing certificate does not name a "+
			"member; it must be a signing certificate issued to a member", err)
	}
	if server != "" {
		return nil, fault(soap.CodeBadCertificate, "the message is signed with a security "+
			"server's authentication certificate; sign with the member's signing "+
			"certificate (clause 4.1.2.8)", nil)
	}
	if want := opts.Member.Member(); signer != want {
		return nil, fault(soap.CodeSignerMismatch, fmt.Sprintf("the message is signed by member "+
			"%s, not by %s; the party named in the message must sign it", signer, want), nil)
	}

	v := verified(m.SOAP, signed, chain)
	if opts.CheckOCSP != nil {
		if err := opts.CheckOCSP(signed.Signer, chain[1], v.OCSP); err != nil {
			return nil, fault(soap.CodeBadCertificate, "the signing certificate's revocation "+
				"status is not acceptable; the sender must staple a fresh OCSP response "+
				"showing its certificate good", err)
		}
	}
	return v, nil
}

// CheckSignature checks body's framing and its CMS signature, and returns
// the SOAP message inside; it checks neither the certificate chain nor the
// member. It is for re-checking archived messages whose signer was
// verified when they were received (the archive tools); a security server
// receiving a message uses Verify. maxBytes of zero means DefaultMaxBytes.
// Its errors are *soap.Fault values like Verify's. Verified.Chain is nil.
func CheckSignature(body []byte, contentType string, maxBytes int) (*Verified, error) {
	msg, err := Parse(body, contentType, maxBytes)
	if err != nil {
		return nil, err
	}
	signed, err := checkSignature(msg.mp)
	if err != nil {
		return nil, err
	}
	return verified(msg.SOAP, signed, nil), nil
}

// checkSignature does the part of Verify that needs no trust anchor: the
// CMS signature over the first part, and its signing time.
func checkSignature(msg *multipart) (*cms.Signed, error) {
	signed, err := cms.Verify(msg.signature, msg.signedEntity)
	if err != nil {
		return nil, fault(soap.CodeBadSignature, "the message signature does not "+
			"verify; the sender must sign the exact message with its member's signing key",
			err)
	}
	if !signed.ContentType.Equal(cms.OIDData) {
		return nil, fault(soap.CodeBadSignature, "the signature's content type is not "+
			"id-data; sign the message as data", nil)
	}
	if signed.SigningTime.IsZero() {
		// Clause 6.2.4: the signing time is what bounds a replay.
		return nil, fault(soap.CodeBadSignature, "the signature has no signing time; "+
			"the sender must sign with a signingTime attribute (clause 6.2.4)", nil)
	}
	return signed, nil
}

// verified assembles the result.
func verified(soapBytes []byte, signed *cms.Signed, chain []*x509.Certificate) *Verified {
	var staple []byte
	if len(signed.OCSP) > 0 {
		staple = signed.OCSP[0]
	}
	return &Verified{
		SOAP:        soapBytes,
		Signer:      signed.Signer,
		SigningTime: signed.SigningTime,
		OCSP:        staple,
		Chain:       chain,
	}
}

// verifyCertificate builds the signer's chain to roots at now, requires it
// valid at the signing time too, checks the key usage and returns the
// chain. The chain's signatures are checked once per certificate and
// roots (see chainCache); the rest is checked on every call.
func verifyCertificate(signed *cms.Signed, now time.Time, roots *x509.CertPool) (
	[]*x509.Certificate, error) {
	const sigUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment
	if signed.Signer.KeyUsage&sigUsage == 0 {
		return nil, fmt.Errorf("certificate of %s allows neither digitalSignature nor "+
			"nonRepudiation", signed.Signer.Subject)
	}

	key := chainKey{cert: sha256.Sum256(signed.Signer.Raw), roots: roots}
	// The chain must be valid now and when the message was signed.
	// Checking the validity periods of a chain built before does that
	// without verifying every certificate's signature again. When no
	// cached chain fits, the chains are built anew at now.
	chain := validChain(chains.get(key), now, signed.SigningTime)
	if chain == nil {
		inter := x509.NewCertPool()
		for _, c := range signed.Certificates {
			if c != signed.Signer {
				inter.AddCert(c)
			}
		}
		built, err := signed.Signer.Verify(x509.VerifyOptions{
			Roots:         roots,
			Intermediates: inter,
			CurrentTime:   now,
			// A signing certificate needs no extended key usage; its key
			// usage is checked above.
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		})
		if err != nil {
			return nil, fmt.Errorf("certificate of %s now: %w", signed.Signer.Subject, err)
		}
		chains.put(key, built)
		chain = validChain(built, now, signed.SigningTime)
	}
	if chain == nil {
		return nil, fmt.Errorf("certificate of %s or its issuer was not valid at the "+
			"signing time %s", signed.Signer.Subject, signed.SigningTime.Format(time.RFC3339))
	}

	// The cached chain is shared: the caller gets its own copy.
	out := make([]*x509.Certificate, len(chain), max(len(chain), 2))
	copy(out, chain)
	if len(out) < 2 {
		// A self-signed signing certificate that is itself a root.
		out = append(out, out[0])
	}
	return out, nil
}

// validAt reports whether every certificate of chain is valid at t.
func validAt(chain []*x509.Certificate, t time.Time) bool {
	for _, c := range chain {
		if t.Before(c.NotBefore) || t.After(c.NotAfter) {
			return false
		}
	}
	return true
}
