package archive

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"
)

// Access is one line of the access journal: who read which message log
// archives, when, to do what, and with what outcome. Clause 3.8.4 names who
// may read the logs and what they may do; clause 6.8 wants such events kept.
type Access struct {
	Time time.Time `json:"time"`
	// Who names the person: the name they gave and the fingerprint of the
	// reader key used.
	Who string `json:"who"`
	Key string `json:"key"`
	// Action is what was done ("verify", "export") and Files to what.
	Action string   `json:"action"`
	Files  []string `json:"files"`
	// Outcome is "started" before the files are opened, then "ok" or
	// what went wrong.
	Outcome string `json:"outcome"`
}

// RecordAccess appends a to the journal at path (JSON, one object a line)
// and syncs it. Readers must call it before opening archives and refuse to
// go on when it fails: an access that cannot be recorded does not happen.
//
// TODO: the journal is neither hash-chained nor signed nor sent to the
// portal (6.8), so whoever can write the file can edit it, and a reader
// who decrypts with openssl instead of qapi leaves no line in it.
func RecordAccess(path string, a Access) error {
	line, err := json.Marshal(a)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("access journal: %w", err)
	}
	_, err = f.Write(append(line, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("access journal %s: %w", path, err)
	}
	return nil
}

// LoadReaderKey reads a reader's ECDSA P-256 private key from a PEM file
// (PKCS #8 "PRIVATE KEY" or SEC 1 "EC PRIVATE KEY"; other blocks, such as
// the reader's certificate, are skipped).
func LoadReaderKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%s holds no PEM private key", path)
		}
		var k any
		switch blk.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(blk.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok || ek.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%s: the key is not ECDSA P-256", path)
		}
		return ek, nil
	}
}

// LoadCertPool reads PEM certificates into a pool.
func LoadCertPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return p, nil
}

// LoadCertificates reads every PEM certificate of the files.
func LoadCertificates(paths ...string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		for {
			var blk *pem.Block
			blk, b = pem.Decode(b)
			if blk == nil {
				break
			}
			if blk.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificates found")
	}
	return out, nil
}

// KeyFingerprint names a reader key in the journal: "sha256:" and the
// first 16 bytes, in hex, of the SHA-256 of its public key (DER SPKI).
func KeyFingerprint(k *ecdsa.PrivateKey) string {
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return "unknown"
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:16])
}
