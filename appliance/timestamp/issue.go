package timestamp

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/qapi-az/qapi/appliance/cms"
)

// Issue answers the DER TimeStampReq req as a TSA with key and cert (whose
// extended key usage must be critical and timeStamping only), stamping time
// now under PolicyQapi with the given serial number. The token always
// carries cert, so that `openssl ts -verify -CAfile` needs only the root.
//
// When the request is refused (malformed, another digest algorithm, another
// policy), Issue returns both a rejection response to send and an error
// wrapping ErrRejected that says why. Any other error means no response
// could be made; the caller answers with an HTTP error.
func Issue(req []byte, key crypto.Signer, cert *x509.Certificate, now time.Time,
	serial *big.Int) (resp []byte, err error) {
	if serial == nil || serial.Sign() <= 0 {
		return nil, errors.New("timestamp: issue: the serial number must be positive")
	}
	r, err := ParseRequest(req)
	if err != nil {
		fail := failBadDataFormat
		if errors.Is(err, errAlgorithm) {
			fail = failBadAlg
		}
		return rejection(fail, "the request was refused: "+err.Error()), fmt.Errorf(
			"%w: %w", ErrRejected, err)
	}
	if r.Policy != nil && !bytes.Equal(r.Policy, PolicyQapi) {
		const why = "the requested policy is not the policy of this TSA"
		return rejection(failUnacceptedPolicy, why), fmt.Errorf("%w: %s", ErrRejected, why)
	}

	var b cryptobyte.Builder
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(1)
		b.AddBytes(PolicyQapi)
		addImprint(b, r.Digest)
		b.AddASN1BigInt(serial)
		b.AddASN1GeneralizedTime(now.UTC().Truncate(time.Second))
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(1) // accuracy: one second
		})
		if r.Nonce != nil {
			b.AddASN1BigInt(r.Nonce)
		}
	})
	info, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("timestamp: encoding TSTInfo: %w", err)
	}
	token, err := cms.Sign(info, key, cert, cms.SignOptions{
		ContentType:          cms.OIDTSTInfo,
		SigningCertificateV2: true,
	})
	if err != nil {
		return nil, fmt.Errorf("timestamp: signing the token: %w", err)
	}

	var out cryptobyte.Builder
	out.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(StatusGranted)
		})
		b.AddBytes(token)
	})
	return out.Bytes()
}

// PKIFailureInfo bits Issue sets.
const (
	failBadAlg           = 0
	failBadDataFormat    = 5
	failUnacceptedPolicy = 15
)

// rejection returns a TimeStampResp with status rejection, the text and
// the failure bit.
func rejection(bit int, text string) []byte {
	bits := make([]byte, bit/8+1)
	bits[bit/8] = 0x80 >> (bit % 8)
	var b cryptobyte.Builder
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(StatusRejection)
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(casn1.UTF8String, func(b *cryptobyte.Builder) {
					b.AddBytes([]byte(text))
				})
			})
			b.AddASN1(casn1.BIT_STRING, func(b *cryptobyte.Builder) {
				b.AddUint8(uint8(7 - bit%8)) // unused bits: DER drops trailing zeros
				b.AddBytes(bits)
			})
		})
	})
	return b.BytesOrPanic()
}
