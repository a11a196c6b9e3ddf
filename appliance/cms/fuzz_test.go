package cms

import (
	"bytes"
	"testing"
	"time"
)

// FuzzVerify feeds Verify mutations of real SignedData: it must refuse or
// accept without panicking, and what it accepts must be what was signed
// over the content it reports.
func FuzzVerify(f *testing.F) {
	fx := newFixture(f)
	content := []byte("<Envelope>fuzz</Envelope>")
	for _, opts := range []SignOptions{
		{Detached: true, SigningTime: time.Now(), OCSP: [][]byte{fx.ocsp}},
		{SigningCertificateV2: true, SubjectKeyID: true, ContentType: OIDTSTInfo},
	} {
		der, err := Sign(content, fx.signer.Key, fx.signer.Cert, opts)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der, opts.Detached)
	}
	f.Fuzz(func(t *testing.T, der []byte, detached bool) {
		var c []byte
		if detached {
			c = content
		}
		got, err := Verify(der, c)
		if err != nil {
			return
		}
		if detached && !bytes.Equal(got.Content, content) {
			t.Errorf("accepted detached content %q, want %q", got.Content, content)
		}
		if got.Signer == nil {
			t.Error("accepted without a signer")
		}
	})
}
