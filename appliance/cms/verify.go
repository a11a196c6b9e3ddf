package cms

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"math/big"
	"time"

	"github.com/qapi-az/qapi/appliance/ecverify"
	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Signed is a parsed and cryptographically verified SignedData.
type Signed struct {
	ContentType asn1.ObjectIdentifier
	Content     []byte // encapsulated or the detached content passed in
	Signer      *x509.Certificate
	// Certificates are all the certificates carried, the signer's
	// included. They may be shared with the results of other calls, and
	// must not be modified.
	Certificates []*x509.Certificate
	SigningTime  time.Time // zero when absent
	OCSP         [][]byte  // stapled id-ri-ocsp-response values, in order
	// SigningCertificateV2 reports that the ESS signing-certificate-v2
	// attribute was present; Verify has checked that it names Signer.
	SigningCertificateV2 bool
}

// Verify parses der, checks the signature over content (for detached
// signatures; nil when encapsulated), and returns what was signed. It
// does not check the certificate chain; callers do, with their own roots.
//
// Every error wraps ErrMalformed (the encoding is not accepted) or
// ErrVerification (digest, attributes, signer or signature wrong).
func Verify(der, content []byte) (*Signed, error) {
	if len(der) > MaxSignedDataSize {
		return nil, malformed("%d bytes is over the limit of %d", len(der), MaxSignedDataSize)
	}
	input := cryptobyte.String(der)
	var ci, wrapped, sd cryptobyte.String
	var ciType asn1.ObjectIdentifier
	if !input.ReadASN1(&ci, casn1.SEQUENCE) {
		return nil, malformed("not a DER ContentInfo")
	}
	if !input.Empty() {
		return nil, malformed("%d bytes of trailing data after the ContentInfo", len(input))
	}
	if !ci.ReadASN1ObjectIdentifier(&ciType) || !ciType.Equal(OIDSignedData) {
		return nil, malformed("content type is not id-signedData")
	}
	if !ci.ReadASN1(&wrapped, explicit(0)) || !ci.Empty() ||
		!wrapped.ReadASN1(&sd, casn1.SEQUENCE) || !wrapped.Empty() {
		return nil, malformed("ContentInfo content is not one SignedData")
	}

	var version int64
	if !sd.ReadASN1Integer(&version) || version < 1 || version > 5 {
		return nil, malformed("SignedData version is not 1 to 5")
	}
	if err := readDigestAlgorithms(&sd); err != nil {
		return nil, err
	}

	out := &Signed{}
	var encap cryptobyte.String
	if !sd.ReadASN1(&encap, casn1.SEQUENCE) || !encap.ReadASN1ObjectIdentifier(&out.ContentType) {
		return nil, malformed("encapContentInfo is not a SEQUENCE with a content type")
	}
	var eContent, octets cryptobyte.String
	var hasContent bool
	if !encap.ReadOptionalASN1(&eContent, &hasContent, explicit(0)) || !encap.Empty() {
		return nil, malformed("encapContentInfo has unexpected fields")
	}
	if hasContent {
		if !eContent.ReadASN1(&octets, casn1.OCTET_STRING) || !eContent.Empty() {
			return nil, malformed("eContent is not one primitive OCTET STRING")
		}
		if content != nil {
			return nil, verification("content is both encapsulated and given as detached")
		}
		out.Content = bytes.Clone(octets)
	} else {
		if content == nil {
			return nil, verification("signature is detached but no content was given")
		}
		out.Content = content
	}

	if err := readCertificates(&sd, out); err != nil {
		return nil, err
	}
	if err := readRevocationInfo(&sd, out); err != nil {
		return nil, err
	}

	var signerInfos, si cryptobyte.String
	if !sd.ReadASN1(&signerInfos, casn1.SET) || !sd.Empty() {
		return nil, malformed("signerInfos missing or followed by trailing fields")
	}
	if !signerInfos.ReadASN1(&si, casn1.SEQUENCE) {
		return nil, malformed("no SignerInfo")
	}
	if !signerInfos.Empty() {
		return nil, malformed("more than one SignerInfo; one signer is accepted")
	}
	if err := verifySignerInfo(si, out); err != nil {
		return nil, err
	}
	return out, nil
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("cms: %w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

func verification(format string, args ...any) error {
	return fmt.Errorf("cms: %w: %s", ErrVerification, fmt.Sprintf(format, args...))
}

// readAlgorithm reads an AlgorithmIdentifier whose parameters are absent
// or NULL.
func readAlgorithm(s *cryptobyte.String, what string) (asn1.ObjectIdentifier, error) {
	var alg cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !s.ReadASN1(&alg, casn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&oid) {
		return nil, malformed("%s is not an AlgorithmIdentifier", what)
	}
	if !alg.Empty() {
		var null cryptobyte.String
		if !alg.ReadASN1(&null, casn1.NULL) || !null.Empty() || !alg.Empty() {
			return nil, malformed("%s has parameters other than NULL", what)
		}
	}
	return oid, nil
}

func readDigestAlgorithms(sd *cryptobyte.String) error {
	var set cryptobyte.String
	if !sd.ReadASN1(&set, casn1.SET) {
		return malformed("digestAlgorithms is not a SET")
	}
	sha := false
	for n := 0; !set.Empty(); n++ {
		if n == maxDigestAlgs {
			return malformed("more than %d digest algorithms", maxDigestAlgs)
		}
		oid, err := readAlgorithm(&set, "digest algorithm")
		if err != nil {
			return err
		}
		sha = sha || oid.Equal(oidSHA256)
	}
	if !sha {
		return verification("digestAlgorithms does not list SHA-256, the only one accepted")
	}
	return nil
}

func readCertificates(sd *cryptobyte.String, out *Signed) error {
	var certs cryptobyte.String
	var present bool
	if !sd.ReadOptionalASN1(&certs, &present, explicit(0)) {
		return malformed("certificates field cannot be read")
	}
	for !certs.Empty() {
		if len(out.Certificates) == maxCertificates {
			return malformed("more than %d certificates", maxCertificates)
		}
		var elem cryptobyte.String
		if !certs.ReadASN1Element(&elem, casn1.SEQUENCE) {
			return malformed("certificate %d is not an X.509 certificate "+
				"(attribute and other certificate formats are not accepted)",
				len(out.Certificates))
		}
		c, err := parsed.certificate(elem)
		if err != nil {
			return fmt.Errorf("cms: %w: certificate %d: %w", ErrMalformed,
				len(out.Certificates), err)
		}
		out.Certificates = append(out.Certificates, c)
	}
	return nil
}

func readRevocationInfo(sd *cryptobyte.String, out *Signed) error {
	var crls cryptobyte.String
	var present bool
	if !sd.ReadOptionalASN1(&crls, &present, explicit(1)) {
		return malformed("crls field cannot be read")
	}
	for n := 0; !crls.Empty(); n++ {
		if n == maxRevocation {
			return malformed("more than %d revocation information entries", maxRevocation)
		}
		var other cryptobyte.String
		switch {
		case crls.PeekASN1Tag(casn1.SEQUENCE):
			// A CRL: carried but not used; callers check status by OCSP.
			if !crls.SkipASN1(casn1.SEQUENCE) {
				return malformed("CRL %d cannot be read", n)
			}
		case crls.ReadASN1(&other, explicit(1)):
			var format asn1.ObjectIdentifier
			if !other.ReadASN1ObjectIdentifier(&format) {
				return malformed("other revocation information %d has no format", n)
			}
			if !format.Equal(OIDOCSPResponse) {
				continue
			}
			var resp cryptobyte.String
			if !other.ReadASN1Element(&resp, casn1.SEQUENCE) || !other.Empty() {
				return malformed("stapled OCSP response %d is not one SEQUENCE", n)
			}
			out.OCSP = append(out.OCSP, []byte(resp))
		default:
			return malformed("revocation information %d is neither a CRL nor other", n)
		}
	}
	return nil
}

// signedAttrs are the signed attributes Verify understands.
type signedAttrs struct {
	contentType asn1.ObjectIdentifier
	digest      []byte
	signingTime time.Time
	essCertHash []byte
	essIssuer   []byte // raw Name, nil when IssuerSerial is absent
	essSerial   *big.Int
}

func verifySignerInfo(si cryptobyte.String, out *Signed) error {
	var version int64
	if !si.ReadASN1Integer(&version) {
		return malformed("SignerInfo version missing")
	}

	var issuer, ski []byte
	serial := new(big.Int)
	switch {
	case si.PeekASN1Tag(casn1.SEQUENCE):
		var ias, name cryptobyte.String
		if !si.ReadASN1(&ias, casn1.SEQUENCE) ||
			!ias.ReadASN1Element(&name, casn1.SEQUENCE) ||
			!ias.ReadASN1Integer(serial) || !ias.Empty() {
			return malformed("issuerAndSerialNumber cannot be read")
		}
		if version != 1 {
			return malformed("SignerInfo version %d with issuerAndSerialNumber, want 1", version)
		}
		issuer = name
	case si.PeekASN1Tag(casn1.Tag(0).ContextSpecific()):
		var id cryptobyte.String
		if !si.ReadASN1(&id, casn1.Tag(0).ContextSpecific()) || len(id) == 0 {
			return malformed("subjectKeyIdentifier cannot be read")
		}
		if version != 3 {
			return malformed("SignerInfo version %d with subjectKeyIdentifier, want 3", version)
		}
		ski = id
	default:
		return malformed("SignerInfo sid is neither issuerAndSerialNumber nor " +
			"subjectKeyIdentifier")
	}

	digestAlg, err := readAlgorithm(&si, "SignerInfo digestAlgorithm")
	if err != nil {
		return err
	}
	if !digestAlg.Equal(oidSHA256) {
		return verification("digest algorithm %v, want SHA-256", digestAlg)
	}

	var rawAttrs cryptobyte.String
	attrTag := casn1.Tag(0).ContextSpecific().Constructed()
	if !si.ReadASN1Element(&rawAttrs, attrTag) {
		return verification("signed attributes are absent; they are required")
	}
	attrs, err := parseSignedAttrs(rawAttrs)
	if err != nil {
		return err
	}

	sigAlg, err := readAlgorithm(&si, "SignerInfo signatureAlgorithm")
	if err != nil {
		return err
	}
	if !sigAlg.Equal(oidECDSAWithSHA256) && !sigAlg.Equal(oidECPublicKey) {
		return verification("signature algorithm %v, want ecdsa-with-SHA256", sigAlg)
	}
	var sig cryptobyte.String
	if !si.ReadASN1(&sig, casn1.OCTET_STRING) {
		return malformed("signature is not an OCTET STRING")
	}
	if !si.SkipOptionalASN1(casn1.Tag(1).ContextSpecific().Constructed()) || !si.Empty() {
		return malformed("SignerInfo has trailing fields")
	}

	for _, c := range out.Certificates {
		if ski != nil && bytes.Equal(c.SubjectKeyId, ski) ||
			issuer != nil && bytes.Equal(c.RawIssuer, issuer) && c.SerialNumber.Cmp(serial) == 0 {
			out.Signer = c
			break
		}
	}
	if out.Signer == nil {
		return verification("the signer's certificate is not among the certificates carried")
	}

	// RFC 5652, 11.1 and 11.2: contentType must equal eContentType and
	// messageDigest must be the digest of the content.
	if !attrs.contentType.Equal(out.ContentType) {
		return verification("contentType attribute %v differs from eContentType %v",
			attrs.contentType, out.ContentType)
	}
	digest := sha256.Sum256(out.Content)
	if !bytes.Equal(attrs.digest, digest[:]) {
		return verification("messageDigest does not match the content")
	}
	out.SigningTime = attrs.signingTime
	if attrs.essCertHash != nil {
		certHash := sha256.Sum256(out.Signer.Raw)
		if !bytes.Equal(attrs.essCertHash, certHash[:]) {
			return verification("signingCertificateV2 names another certificate than the signer's")
		}
		if attrs.essIssuer != nil && (!bytes.Equal(attrs.essIssuer, out.Signer.RawIssuer) ||
			attrs.essSerial.Cmp(out.Signer.SerialNumber) != 0) {
			return verification("signingCertificateV2 issuerSerial is not the signer's")
		}
		out.SigningCertificateV2 = true
	}

	pub, ok := out.Signer.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return verification("signer's key is not an ECDSA P-256 key")
	}
	// RFC 5652, 5.4: the signature is over the DER SET OF attributes.
	toSign := make([]byte, len(rawAttrs))
	copy(toSign, rawAttrs)
	toSign[0] = 0x31
	h := sha256.Sum256(toSign)
	if !ecverify.VerifyASN1(pub, h[:], sig) {
		return verification("signature does not verify with the signer's key")
	}
	return nil
}

func parseSignedAttrs(raw cryptobyte.String) (*signedAttrs, error) {
	var set cryptobyte.String
	if !raw.ReadASN1(&set, casn1.Tag(0).ContextSpecific().Constructed()) {
		return nil, malformed("signed attributes cannot be read")
	}
	a := &signedAttrs{}
	var seen []asn1.ObjectIdentifier
	for !set.Empty() {
		if len(seen) == maxAttributes {
			return nil, malformed("more than %d signed attributes", maxAttributes)
		}
		var attr, values, value cryptobyte.String
		var typ asn1.ObjectIdentifier
		if !set.ReadASN1(&attr, casn1.SEQUENCE) || !attr.ReadASN1ObjectIdentifier(&typ) ||
			!attr.ReadASN1(&values, casn1.SET) || !attr.Empty() {
			return nil, malformed("signed attribute %d cannot be read", len(seen))
		}
		for _, s := range seen {
			if s.Equal(typ) {
				return nil, malformed("signed attribute %v appears twice", typ)
			}
		}
		seen = append(seen, typ)

		var known bool
		var ok bool
		switch {
		case typ.Equal(oidAttrContentType):
			known, ok = true, values.ReadASN1ObjectIdentifier(&a.contentType)
		case typ.Equal(oidAttrMessageDigest):
			known = true
			ok = values.ReadASN1(&value, casn1.OCTET_STRING)
			a.digest = value
		case typ.Equal(oidAttrSigningTime):
			known = true
			if values.PeekASN1Tag(casn1.UTCTime) {
				ok = values.ReadASN1UTCTime(&a.signingTime)
			} else {
				ok = values.ReadASN1GeneralizedTime(&a.signingTime)
			}
		case typ.Equal(oidAttrSigningCertV2):
			known = true
			ok = parseSigningCertV2(&values, a)
		}
		// RFC 5652, 11: these attributes carry exactly one value.
		if known && (!ok || !values.Empty()) {
			return nil, malformed("signed attribute %v is not exactly one valid value", typ)
		}
	}
	if a.contentType == nil || a.digest == nil {
		return nil, malformed("signed attributes lack contentType or messageDigest")
	}
	return a, nil
}

// parseSigningCertV2 reads the first ESSCertIDv2 of a SigningCertificateV2
// value (RFC 5035); the first names the signer, later ones do not matter
// here.
func parseSigningCertV2(values *cryptobyte.String, a *signedAttrs) bool {
	var scv2, certs, id cryptobyte.String
	if !values.ReadASN1(&scv2, casn1.SEQUENCE) || !scv2.ReadASN1(&certs, casn1.SEQUENCE) ||
		!certs.ReadASN1(&id, casn1.SEQUENCE) {
		return false
	}
	if id.PeekASN1Tag(casn1.SEQUENCE) {
		oid, err := readAlgorithm(&id, "ESSCertIDv2 hashAlgorithm")
		if err != nil || !oid.Equal(oidSHA256) {
			return false
		}
	}
	var hash cryptobyte.String
	if !id.ReadASN1(&hash, casn1.OCTET_STRING) || len(hash) != sha256.Size {
		return false
	}
	a.essCertHash = hash
	if id.Empty() {
		return true
	}
	var is, names, dn, name cryptobyte.String
	serial := new(big.Int)
	if !id.ReadASN1(&is, casn1.SEQUENCE) || !is.ReadASN1(&names, casn1.SEQUENCE) ||
		!names.ReadASN1(&dn, explicit(4)) || !dn.ReadASN1Element(&name, casn1.SEQUENCE) ||
		!dn.Empty() || !is.ReadASN1Integer(serial) || !is.Empty() || !id.Empty() {
		return false
	}
	a.essIssuer, a.essSerial = name, serial
	return true
}
