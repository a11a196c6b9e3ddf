package archive

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/qapi-az/qapi/internal/testenv"
	"github.com/qapi-az/qapi/internal/testpki"
)

// RFC 3394 section 4.6: wrap 256 bits of key data with a 256-bit KEK.
func TestKeyWrapVector(t *testing.T) {
	kek, _ := hex.DecodeString("000102030405060708090A0B0C0D0E0F" +
		"101112131415161718191A1B1C1D1E1F")
	key, _ := hex.DecodeString("00112233445566778899AABBCCDDEEFF" +
		"000102030405060708090A0B0C0D0E0F")
	want, _ := hex.DecodeString("28C9F404C4B810F4CBCCB35CFB87F826" +
		"3F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21")
	got, err := keyWrap(kek, key)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("keyWrap = %x, %v; want %x", got, err, want)
	}
	back, err := keyUnwrap(kek, got)
	if err != nil || !bytes.Equal(back, key) {
		t.Fatalf("keyUnwrap = %x, %v", back, err)
	}
	got[3] ^= 1
	if _, err := keyUnwrap(kek, got); err == nil {
		t.Fatal("keyUnwrap accepted a damaged key")
	}
}

type reader struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newReaders(t testing.TB, n int) []reader {
	t.Helper()
	ca, err := testpki.NewCA("archive readers")
	if err != nil {
		t.Fatal(err)
	}
	var out []reader
	for range n {
		c, err := ca.IssueTLS("log reader")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, reader{c.Cert, c.Key})
	}
	return out
}

func certs(rs []reader) []*x509.Certificate {
	var cs []*x509.Certificate
	for _, r := range rs {
		cs = append(cs, r.cert)
	}
	return cs
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}),
		0o600); err != nil {
		t.Fatal(err)
	}
}

func writeReader(t testing.TB, dir string, r reader) (certPath, keyPath string) {
	t.Helper()
	k, err := x509.MarshalPKCS8PrivateKey(r.key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "reader.pem"), filepath.Join(dir, "reader-key.pem")
	writePEM(t, certPath, "CERTIFICATE", r.cert.Raw)
	writePEM(t, keyPath, "PRIVATE KEY", k)
	return certPath, keyPath
}

// TestEnvelopeOpenSSL: each reader decrypts with this package and with
// openssl cms -decrypt; a stranger's key does not.
func TestEnvelopeOpenSSL(t *testing.T) {
	openssl := testenv.NeedCommand(t, "openssl")
	rs := newReaders(t, 3)
	plain := bytes.Repeat([]byte("archived message log entry\n"), 1000)
	der, cek, err := encrypt(plain, certs(rs[:2]))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := decryptWithKey(der, cek); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("decryptWithKey: %v", err)
	}
	for i, r := range rs[:2] {
		got, err := decrypt(der, r.key)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("reader %d: %v", i, err)
		}
		dir := t.TempDir()
		certPath, keyPath := writeReader(t, dir, r)
		in := filepath.Join(dir, "a.p7m")
		os.WriteFile(in, der, 0o600)
		// With the reader's certificate, and with the key alone.
		for _, recip := range [][]string{{"-recip", certPath}, nil} {
			args := append([]string{"cms", "-decrypt", "-inform", "DER", "-in", in,
				"-inkey", keyPath, "-binary"}, recip...)
			cmd := exec.Command(openssl, args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("openssl %v, reader %d: %v: %s", args, i, err, stderr.Bytes())
			}
			if !bytes.Equal(out, plain) {
				t.Fatalf("openssl decrypted %d bytes, want %d", len(out), len(plain))
			}
		}
	}
	if _, err := decrypt(der, rs[2].key); !errors.Is(err, ErrNotRecipient) {
		t.Fatalf("a stranger's key: %v, want ErrNotRecipient", err)
	}
}
