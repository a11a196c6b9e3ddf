// Package timestamp speaks RFC 3161, the Time-Stamp Protocol: it builds
// requests for a SHA-256 digest, verifies responses and tokens against a
// trusted time-stamping authority (TSA), fetches stamps over HTTP, and
// issues them for the portal's TSA.
//
// The message log stamps the head of its hash chain with it, so that every
// archived message carries proof of when it was logged (clause 2.2.2). The
// tokens are plain RFC 3161: `openssl ts -verify` checks them.
//
// Only SHA-256 message imprints and ECDSA P-256 TSA keys are used, the
// algorithms of the whole exchange. Package cms checks the token's
// signature; this package checks what it says and who said it.
package timestamp

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/qapi-az/qapi/appliance/cms"
)

// ContentTypeQuery and ContentTypeReply are the HTTP media types of RFC 3161
// section 3.4.
const (
	ContentTypeQuery = "application/timestamp-query"
	ContentTypeReply = "application/timestamp-reply"
)

// Errors callers branch on.
var (
	// ErrMalformed is wrapped by every error about an encoding that does not
	// parse as what RFC 3161 says it must be.
	ErrMalformed = errors.New("malformed time-stamp structure")
	// ErrRejected is wrapped when the TSA refused the request (its status is
	// neither granted nor grantedWithMods), and by Issue when it refuses one.
	ErrRejected = errors.New("time stamp refused")
	// ErrVerification is wrapped when a token does not check out: its
	// signature, imprint, nonce, or the TSA's certificate.
	ErrVerification = errors.New("time stamp does not verify")
)

// errAlgorithm is wrapped when an imprint uses another hash than SHA-256.
var errAlgorithm = errors.New("the messageImprint algorithm is not SHA-256")

var (
	oidSHA256 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
)

// PolicyQapi is the DER OBJECT IDENTIFIER of the policy under which Issue
// stamps: 2.25.267885325272892464586658468123588177683, a UUID-based
// identifier (ITU-T X.667), since the project owns no registered arc.
var PolicyQapi = []byte{0x06, 0x14, 0x69, 0x83, 0x93, 0x88, 0xeb, 0x90, 0xe1, 0xb0, 0xf2,
	0x84, 0xc5, 0xa3, 0xf5, 0xdf, 0xaf, 0xe7, 0x9a, 0xb0, 0xde, 0x13}

// Request is a parsed TimeStampReq.
type Request struct {
	// Digest is the SHA-256 hashedMessage of the messageImprint.
	Digest []byte
	// Policy is the DER OBJECT IDENTIFIER of reqPolicy, nil when absent.
	Policy []byte
	// Nonce is nil when absent.
	Nonce *big.Int
	// CertReq asks the TSA to include its certificate in the token.
	CertReq bool
}

// NewRequest returns a DER TimeStampReq for a SHA-256 digest with a fresh
// 128-bit nonce and certReq set, and the nonce, which the response must
// echo.
func NewRequest(digest []byte) (der []byte, nonce *big.Int, err error) {
	if len(digest) != 32 {
		return nil, nil, fmt.Errorf("time stamp request: digest is %d bytes, want a "+
			"32-byte SHA-256", len(digest))
	}
	nonce, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("time stamp request: drawing a nonce: %w", err)
	}
	der, err = marshalRequest(&Request{Digest: digest, Nonce: nonce, CertReq: true})
	return der, nonce, err
}

func marshalRequest(r *Request) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(1)
		addImprint(b, r.Digest)
		if r.Policy != nil {
			b.AddBytes(r.Policy)
		}
		if r.Nonce != nil {
			b.AddASN1BigInt(r.Nonce)
		}
		if r.CertReq {
			b.AddASN1Boolean(true)
		}
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("encoding the time stamp request: %w", err)
	}
	return der, nil
}

func addImprint(b *cryptobyte.Builder, digest []byte) {
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidSHA256)
		})
		b.AddASN1OctetString(digest)
	})
}

// readImprint reads a MessageImprint and returns its SHA-256 digest; other
// algorithms are refused.
func readImprint(s *cryptobyte.String) ([]byte, error) {
	var mi, alg cryptobyte.String
	var oid asn1.ObjectIdentifier
	var digest []byte
	if !s.ReadASN1(&mi, casn1.SEQUENCE) || !mi.ReadASN1(&alg, casn1.SEQUENCE) ||
		!alg.ReadASN1ObjectIdentifier(&oid) {
		return nil, fmt.Errorf("%w: messageImprint", ErrMalformed)
	}
	if !oid.Equal(oidSHA256) {
		return nil, fmt.Errorf("%w: %w: %v", ErrMalformed, errAlgorithm, oid)
	}
	// Parameters are absent or NULL (RFC 5754 allows both).
	if !alg.Empty() && (!alg.SkipASN1(casn1.NULL) || !alg.Empty()) {
		return nil, fmt.Errorf("%w: messageImprint algorithm parameters", ErrMalformed)
	}
	if !mi.ReadASN1Bytes(&digest, casn1.OCTET_STRING) || !mi.Empty() || len(digest) != 32 {
		return nil, fmt.Errorf("%w: messageImprint digest is not 32 bytes", ErrMalformed)
	}
	return digest, nil
}

// ParseRequest parses a DER TimeStampReq. Extensions are refused, since no
// extension is understood.
func ParseRequest(der []byte) (*Request, error) {
	in := cryptobyte.String(der)
	var s cryptobyte.String
	var version int64
	if !in.ReadASN1(&s, casn1.SEQUENCE) || !in.Empty() {
		return nil, fmt.Errorf("%w: not one DER TimeStampReq", ErrMalformed)
	}
	if !s.ReadASN1Integer(&version) || version != 1 {
		return nil, fmt.Errorf("%w: TimeStampReq version is not 1", ErrMalformed)
	}
	r := &Request{}
	var err error
	if r.Digest, err = readImprint(&s); err != nil {
		return nil, err
	}
	if s.PeekASN1Tag(casn1.OBJECT_IDENTIFIER) {
		var p cryptobyte.String
		if !s.ReadASN1Element(&p, casn1.OBJECT_IDENTIFIER) {
			return nil, fmt.Errorf("%w: reqPolicy", ErrMalformed)
		}
		r.Policy = bytes.Clone(p)
	}
	if s.PeekASN1Tag(casn1.INTEGER) {
		r.Nonce = new(big.Int)
		if !s.ReadASN1Integer(r.Nonce) {
			return nil, fmt.Errorf("%w: nonce", ErrMalformed)
		}
	}
	if s.PeekASN1Tag(casn1.BOOLEAN) {
		if !s.ReadASN1Boolean(&r.CertReq) || !r.CertReq {
			// DER leaves out a DEFAULT FALSE.
			return nil, fmt.Errorf("%w: certReq", ErrMalformed)
		}
	}
	if !s.Empty() {
		return nil, fmt.Errorf("%w: TimeStampReq has extensions or trailing fields",
			ErrMalformed)
	}
	return r, nil
}

// Info is a parsed TSTInfo: what the TSA vouches for.
type Info struct {
	// Policy is the DER OBJECT IDENTIFIER of the TSA's policy.
	Policy []byte
	// Digest is the SHA-256 messageImprint stamped.
	Digest  []byte
	Serial  *big.Int
	GenTime time.Time
	// Accuracy is zero when absent.
	Accuracy time.Duration
	// Nonce is nil when absent.
	Nonce *big.Int
}

// PolicyString returns Policy in dotted form, or "" when it does not parse.
func (i *Info) PolicyString() string { return oidString(i.Policy) }

// oidString renders a DER OBJECT IDENTIFIER of arcs of any size.
func oidString(der []byte) string {
	if len(der) < 3 || der[0] != 0x06 || int(der[1]) != len(der)-2 {
		return ""
	}
	var arcs []string
	v := new(big.Int)
	for i, c := range der[2:] {
		v.Lsh(v, 7).Or(v, big.NewInt(int64(c&0x7f)))
		if c&0x80 != 0 {
			if i == len(der)-3 {
				return ""
			}
			continue
		}
		if arcs == nil {
			first := big.NewInt(2)
			switch {
			case v.Cmp(big.NewInt(40)) < 0:
				first = big.NewInt(0)
			case v.Cmp(big.NewInt(80)) < 0:
				first = big.NewInt(1)
			}
			arcs = append(arcs, first.String(),
				new(big.Int).Sub(v, new(big.Int).Mul(first, big.NewInt(40))).String())
		} else {
			arcs = append(arcs, v.String())
		}
		v = new(big.Int)
	}
	return strings.Join(arcs, ".")
}

// ParseInfo parses a DER TSTInfo.
func ParseInfo(der []byte) (*Info, error) {
	in := cryptobyte.String(der)
	var s cryptobyte.String
	var version int64
	if !in.ReadASN1(&s, casn1.SEQUENCE) || !in.Empty() {
		return nil, fmt.Errorf("%w: not one DER TSTInfo", ErrMalformed)
	}
	if !s.ReadASN1Integer(&version) || version != 1 {
		return nil, fmt.Errorf("%w: TSTInfo version is not 1", ErrMalformed)
	}
	info := &Info{Serial: new(big.Int)}
	var policy cryptobyte.String
	if !s.ReadASN1Element(&policy, casn1.OBJECT_IDENTIFIER) {
		return nil, fmt.Errorf("%w: TSTInfo policy", ErrMalformed)
	}
	info.Policy = bytes.Clone(policy)
	var err error
	if info.Digest, err = readImprint(&s); err != nil {
		return nil, err
	}
	if !s.ReadASN1Integer(info.Serial) {
		return nil, fmt.Errorf("%w: TSTInfo serialNumber", ErrMalformed)
	}
	var gt cryptobyte.String
	if !s.ReadASN1(&gt, casn1.GeneralizedTime) {
		return nil, fmt.Errorf("%w: TSTInfo genTime", ErrMalformed)
	}
	if info.GenTime, err = parseGeneralizedTime(string(gt)); err != nil {
		return nil, err
	}
	if s.PeekASN1Tag(casn1.SEQUENCE) {
		var acc cryptobyte.String
		if !s.ReadASN1(&acc, casn1.SEQUENCE) {
			return nil, fmt.Errorf("%w: TSTInfo accuracy", ErrMalformed)
		}
		if info.Accuracy, err = parseAccuracy(acc); err != nil {
			return nil, err
		}
	}
	if s.PeekASN1Tag(casn1.BOOLEAN) {
		var ordering bool
		if !s.ReadASN1Boolean(&ordering) {
			return nil, fmt.Errorf("%w: TSTInfo ordering", ErrMalformed)
		}
	}
	if s.PeekASN1Tag(casn1.INTEGER) {
		info.Nonce = new(big.Int)
		if !s.ReadASN1Integer(info.Nonce) {
			return nil, fmt.Errorf("%w: TSTInfo nonce", ErrMalformed)
		}
	}
	// The tsa name [0] and extensions [1] carry nothing this package
	// checks; they are skipped.
	if !s.SkipOptionalASN1(casn1.Tag(0).ContextSpecific().Constructed()) ||
		!s.SkipOptionalASN1(casn1.Tag(1).ContextSpecific().Constructed()) || !s.Empty() {
		return nil, fmt.Errorf("%w: TSTInfo has trailing fields", ErrMalformed)
	}
	return info, nil
}

// parseGeneralizedTime accepts the forms RFC 3161 allows: UTC ("Z"),
// seconds always present, an optional fraction without trailing zeros.
func parseGeneralizedTime(s string) (time.Time, error) {
	if !strings.HasSuffix(s, "Z") || len(s) < 15 {
		return time.Time{}, fmt.Errorf("%w: genTime %q is not YYYYMMDDhhmmss[.f]Z",
			ErrMalformed, s)
	}
	t, err := time.Parse("20060102150405.999999999Z", s)
	if err != nil || strings.HasSuffix(s, "0Z") && strings.Contains(s, ".") ||
		strings.HasSuffix(s, ".Z") {
		return time.Time{}, fmt.Errorf("%w: genTime %q is not YYYYMMDDhhmmss[.f]Z",
			ErrMalformed, s)
	}
	return t, nil
}

func parseAccuracy(acc cryptobyte.String) (time.Duration, error) {
	var secs, millis, micros int64
	if acc.PeekASN1Tag(casn1.INTEGER) && !acc.ReadASN1Integer(&secs) {
		return 0, fmt.Errorf("%w: accuracy seconds", ErrMalformed)
	}
	for _, f := range []struct {
		tag casn1.Tag
		v   *int64
	}{{casn1.Tag(0).ContextSpecific(), &millis}, {casn1.Tag(1).ContextSpecific(), &micros}} {
		var raw cryptobyte.String
		var present bool
		if !acc.ReadOptionalASN1(&raw, &present, f.tag) {
			return 0, fmt.Errorf("%w: accuracy", ErrMalformed)
		}
		if present {
			// An IMPLICIT INTEGER: the content octets of an INTEGER.
			n := new(big.Int).SetBytes(raw)
			if len(raw) == 0 || raw[0]&0x80 != 0 || !n.IsInt64() {
				return 0, fmt.Errorf("%w: accuracy", ErrMalformed)
			}
			*f.v = n.Int64()
		}
	}
	if !acc.Empty() || secs < 0 || millis < 0 || millis > 999 || micros < 0 || micros > 999 {
		return 0, fmt.Errorf("%w: accuracy", ErrMalformed)
	}
	return time.Duration(secs)*time.Second + time.Duration(millis)*time.Millisecond +
		time.Duration(micros)*time.Microsecond, nil
}

// Token is a verified time-stamp token.
type Token struct {
	// DER is the token: a ContentInfo holding a SignedData over a TSTInfo.
	DER  []byte
	Info *Info
	// TSA is the certificate that signed the token.
	TSA *x509.Certificate
}

// VerifyToken checks a time-stamp token (the DER ContentInfo): its CMS
// signature, that it stamps digest, and that its signer's certificate
// chains to roots at the stamp's time and is for time stamping only
// (RFC 3161 section 2.3). Intermediates may come from the token itself.
// Every error wraps ErrMalformed or ErrVerification.
func VerifyToken(token, digest []byte, roots *x509.CertPool) (*Token, error) {
	signed, err := cms.Verify(token, nil)
	if err != nil {
		if errors.Is(err, cms.ErrMalformed) {
			return nil, fmt.Errorf("%w: the token's SignedData: %w", ErrMalformed, err)
		}
		return nil, fmt.Errorf("%w: the token's signature: %w", ErrVerification, err)
	}
	if !signed.ContentType.Equal(cms.OIDTSTInfo) {
		return nil, fmt.Errorf("%w: the token's content type %v is not id-ct-TSTInfo",
			ErrMalformed, signed.ContentType)
	}
	info, err := ParseInfo(signed.Content)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(info.Digest, digest) {
		return nil, fmt.Errorf("%w: the token stamps another digest", ErrVerification)
	}
	if !signed.SigningCertificateV2 {
		// RFC 5816: the signer must be named by an ESS signing certificate
		// attribute, so that the certificate cannot be swapped.
		return nil, fmt.Errorf("%w: the token has no ESS signing-certificate-v2 attribute",
			ErrVerification)
	}
	if err := checkTSA(signed.Signer, signed.Certificates, roots, info.GenTime); err != nil {
		return nil, err
	}
	return &Token{DER: bytes.Clone(token), Info: info, TSA: signed.Signer}, nil
}

var oidEKU = asn1.ObjectIdentifier{2, 5, 29, 37}

func checkTSA(cert *x509.Certificate, pool []*x509.Certificate, roots *x509.CertPool,
	at time.Time) error {
	if roots == nil {
		return fmt.Errorf("%w: no trusted TSA certificate given", ErrVerification)
	}
	// RFC 3161 2.3: the extended key usage is critical and names
	// timeStamping alone.
	critical := false
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(oidEKU) {
			critical = ext.Critical
		}
	}
	if !critical || len(cert.ExtKeyUsage) != 1 ||
		cert.ExtKeyUsage[0] != x509.ExtKeyUsageTimeStamping || len(cert.UnknownExtKeyUsage) != 0 {
		return fmt.Errorf("%w: the signer %q is not a TSA certificate (its extended key "+
			"usage must be critical and timeStamping only)", ErrVerification, cert.Subject)
	}
	inter := x509.NewCertPool()
	for _, c := range pool {
		if !c.Equal(cert) {
			inter.AddCert(c)
		}
	}
	_, err := cert.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping},
	})
	if err != nil {
		return fmt.Errorf("%w: the TSA certificate %q is not trusted at %s: %w",
			ErrVerification, cert.Subject, at.Format(time.RFC3339), err)
	}
	return nil
}

// PKIStatus values of a TimeStampResp (RFC 3161 section 2.4.2).
const (
	StatusGranted                = 0
	StatusGrantedWithMods        = 1
	StatusRejection              = 2
	StatusWaiting                = 3
	StatusRevocationWarning      = 4
	StatusRevocationNotification = 5
)

// ParseResponse parses a DER TimeStampResp and returns the token it carries
// when the status is granted (or grantedWithMods). A refusal wraps
// ErrRejected and gives the TSA's status text.
func ParseResponse(der []byte) (token []byte, err error) {
	in := cryptobyte.String(der)
	var s, si cryptobyte.String
	var status int64
	if !in.ReadASN1(&s, casn1.SEQUENCE) || !in.Empty() ||
		!s.ReadASN1(&si, casn1.SEQUENCE) || !si.ReadASN1Integer(&status) {
		return nil, fmt.Errorf("%w: not one DER TimeStampResp", ErrMalformed)
	}
	var text []string
	if si.PeekASN1Tag(casn1.SEQUENCE) {
		var ft cryptobyte.String
		if !si.ReadASN1(&ft, casn1.SEQUENCE) {
			return nil, fmt.Errorf("%w: statusString", ErrMalformed)
		}
		for !ft.Empty() {
			var u cryptobyte.String
			if !ft.ReadASN1(&u, casn1.UTF8String) {
				return nil, fmt.Errorf("%w: statusString", ErrMalformed)
			}
			text = append(text, string(u))
		}
	}
	var fail asn1.BitString
	if si.PeekASN1Tag(casn1.BIT_STRING) {
		if !si.ReadASN1BitString((*asn1.BitString)(&fail)) {
			return nil, fmt.Errorf("%w: failInfo", ErrMalformed)
		}
	}
	if !si.Empty() {
		return nil, fmt.Errorf("%w: PKIStatusInfo has trailing fields", ErrMalformed)
	}
	if status != StatusGranted && status != StatusGrantedWithMods {
		why := "status " + strconv.FormatInt(status, 10)
		if len(text) > 0 {
			why += ": " + strings.Join(text, "; ")
		}
		for bit, name := range failInfoNames {
			if fail.At(bit) == 1 {
				why += " (" + name + ")"
			}
		}
		return nil, fmt.Errorf("%w by the TSA: %s", ErrRejected, why)
	}
	var tok cryptobyte.String
	if !s.ReadASN1Element(&tok, casn1.SEQUENCE) || !s.Empty() {
		return nil, fmt.Errorf("%w: a granted TimeStampResp without one token", ErrMalformed)
	}
	return bytes.Clone(tok), nil
}

// failInfoNames are the PKIFailureInfo bits RFC 3161 defines.
var failInfoNames = map[int]string{
	0: "badAlg", 2: "badRequest", 5: "badDataFormat", 14: "timeNotAvailable",
	15: "unacceptedPolicy", 16: "unacceptedExtension", 17: "addInfoNotAvailable",
	25: "systemFailure",
}

// VerifyResponse parses a TimeStampResp to the request for digest with the
// given nonce, checks the token with VerifyToken and that it echoes the
// nonce.
func VerifyResponse(resp, digest []byte, nonce *big.Int, roots *x509.CertPool) (*Token, error) {
	der, err := ParseResponse(resp)
	if err != nil {
		return nil, err
	}
	tok, err := VerifyToken(der, digest, roots)
	if err != nil {
		return nil, err
	}
	if nonce != nil && (tok.Info.Nonce == nil || tok.Info.Nonce.Cmp(nonce) != 0) {
		return nil, fmt.Errorf("%w: the token does not echo the request's nonce",
			ErrVerification)
	}
	return tok, nil
}
