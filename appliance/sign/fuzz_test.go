package sign

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/soap"
)

// FuzzVerify feeds Verify mutations of a signed message and its
// Content-Type: it must never panic, must refuse with a *soap.Fault, and
// what it accepts must be the SOAP message that was signed.
func FuzzVerify(f *testing.F) {
	fx := newFixture(f)
	body, ct, err := fx.signer.Sign(request, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(body, ct)
	f.Add(body[:len(body)/2], ct)
	f.Add([]byte("--b\r\nContent-Type: text/xml\r\n\r\n<a/>\r\n--b\r\n\r\n\r\n--b--"),
		`multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; boundary=b`)
	opts := fx.opts()
	f.Fuzz(func(t *testing.T, body []byte, ct string) {
		v, err := Verify(body, ct, opts)
		if err != nil {
			var flt *soap.Fault
			if !errors.As(err, &flt) {
				t.Fatalf("error %v is %T, want *soap.Fault", err, err)
			}
			return
		}
		if !bytes.Equal(v.SOAP, request) {
			t.Errorf("accepted SOAP %q, which was never signed", v.SOAP)
		}
	})
}
