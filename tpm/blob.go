package tpm

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// blobFormat is the version of the blob's JSON form.
const blobFormat = 1

// Blob is a sealed secret as it rests on disk: the TPM's encrypted object
// and what is needed to say, before asking the TPM, why it would refuse.
// Nothing in it is secret: only the TPM that created it can decrypt Private.
type Blob struct {
	// Format is the version of this layout (1).
	Format int `json:"format"`
	// SRKName is the TPM name of the storage root key that sealed the
	// blob: the identity of the TPM (and of its owner seed).
	SRKName []byte `json:"srkName"`
	// Public and Private are the sealed object's TPM2B_PUBLIC and
	// TPM2B_PRIVATE, as TPM2_Create returned them.
	Public  []byte `json:"public"`
	Private []byte `json:"private"`
	// Policy is the object's policy digest.
	Policy []byte `json:"policy"`
	// PCRs are the expected SHA-256 PCR values of a blob sealed to PCRs;
	// empty for a blob sealed to an authority.
	PCRs []PCRValue `json:"pcrs,omitempty"`
	// Authority is the PKIX form of the ECDSA P-256 key whose approvals
	// unseal the blob; empty for a blob sealed to PCRs.
	Authority []byte `json:"authority,omitempty"`
	// Base is the anti-rollback counter's base the blob was sealed for
	// (SealOptions.Base); zero means 1.
	Base uint64 `json:"base,omitempty"`
}

// authority returns the blob's authority key, nil if it has none.
func (b *Blob) authority() (*ecdsa.PublicKey, error) {
	if len(b.Authority) == 0 {
		return nil, nil
	}
	k, err := x509.ParsePKIXPublicKey(b.Authority)
	if err != nil {
		return nil, fmt.Errorf("sealed blob: parse the authority key: %w", err)
	}
	ek, ok := k.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("sealed blob: the authority key is %T, not ECDSA", k)
	}
	return ek, nil
}

// MarshalBlob encodes b in its on-disk JSON form.
func MarshalBlob(b *Blob) ([]byte, error) { return json.MarshalIndent(b, "", "\t") }

// ParseBlob decodes a blob from its on-disk form.
func ParseBlob(data []byte) (*Blob, error) {
	var b Blob
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("parse the sealed blob: %w", err)
	}
	if b.Format != blobFormat {
		return nil, fmt.Errorf("sealed blob has format %d; this program reads format %d",
			b.Format, blobFormat)
	}
	if len(b.SRKName) == 0 || len(b.Public) == 0 || len(b.Private) == 0 {
		return nil, fmt.Errorf("sealed blob is incomplete: it lacks the storage root key " +
			"name or the sealed object")
	}
	return &b, nil
}

// WriteBlobFile writes b to path atomically (a temporary file renamed over
// path), readable by the owner only, and syncs it: a crash leaves the old
// blob or the new one, never half of one.
func WriteBlobFile(path string, b *Blob) error {
	return writeBlobFile(path, b, os.Rename)
}

// CreateBlobFile writes b to path like WriteBlobFile, but fails with an
// error matching fs.ErrExist instead of replacing a blob already there: of
// two processes creating the same key, the second learns it lost and reads
// the first one's blob.
func CreateBlobFile(path string, b *Blob) error {
	return writeBlobFile(path, b, os.Link)
}

func writeBlobFile(path string, b *Blob, place func(tmp, path string) error) error {
	data, err := MarshalBlob(b)
	if err != nil {
		return fmt.Errorf("encode the sealed blob: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write the sealed blob: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write the sealed blob %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync the sealed blob %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write the sealed blob %s: %w", f.Name(), err)
	}
	if err := place(f.Name(), path); err != nil {
		return fmt.Errorf("write the sealed blob: %w", err)
	}
	// The directory entry must reach the disk too; where the directory
	// cannot be synced there is nothing more to do.
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// ReadBlobFile reads and decodes the blob at path.
func ReadBlobFile(path string) (*Blob, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, err := ParseBlob(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}
