package cms

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"io"
	"strings"
	"testing"
	"time"
)

// deviceSigner stands for a TPM or a key store: a crypto.Signer that is not
// a *ecdsa.PrivateKey. When faulty, it signs another digest.
type deviceSigner struct {
	key    *ecdsa.PrivateKey
	faulty bool
}

func (d deviceSigner) Public() crypto.PublicKey { return d.key.Public() }

func (d deviceSigner) Sign(r io.Reader, digest []byte, o crypto.SignerOpts) ([]byte, error) {
	if d.faulty {
		other := sha256.Sum256(digest)
		digest = other[:]
	}
	return d.key.Sign(r, digest, o)
}

// A signature from a device is checked before it leaves: a faulty one is
// refused by Sign, a sound one verifies.
func TestSignChecksDeviceSignatures(t *testing.T) {
	f := newFixture(t)
	key := f.signer.Key
	content := []byte("<soap/>")
	opts := SignOptions{Detached: true, SigningTime: time.Now()}

	_, err := Sign(content, deviceSigner{key: key, faulty: true}, f.signer.Cert, opts)
	if err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Errorf("faulty device: %v, want a signature that does not verify", err)
	}

	der, err := Sign(content, deviceSigner{key: key}, f.signer.Cert, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(der, content); err != nil {
		t.Errorf("sound device: %v", err)
	}
}
