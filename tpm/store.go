package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/qapi-az/qapi/appliance/keys"
)

// StoreOptions configure OpenStore.
type StoreOptions struct {
	// TPM is the TPM to seal to; nil opens the device with Open. The store
	// closes only a TPM it opened.
	TPM *TPM
	// Authority is the operator's ECDSA P-256 key whose approvals of a boot
	// state unseal the keys; Approval is its approval of the current boot.
	// With Authority nil the keys are sealed to the current values of PCRs
	// (DefaultPCRs if nil), and an update that changes them locks the keys
	// out: that mode is for machines whose measured boot never changes.
	Authority *ecdsa.PublicKey
	Approval  *Approval
	PCRs      []int
	// EKRoots, when set, are the TPM manufacturers' root certificates,
	// and EKIntermediates their intermediate ones: before sealing its
	// first key the store checks the storage root key against the TPM's
	// endorsement key certificate (TPM.CheckEndorsement) and seals
	// nothing if the check fails (clause 6.2.3). A TPM without an EK
	// certificate fails it too, unless EKOptional is set; then it is
	// trusted unchecked, and a caller that wants to say so calls
	// CheckEndorsement itself.
	EKRoots, EKIntermediates *x509.CertPool
	EKOptional               bool
}

// Store is the security server's keys.Store on the appliance: each key is
// generated on the box and rests on disk only sealed by the TPM, one blob
// file per purpose in its directory (clauses 2.3, 6.2.3). It is safe for
// concurrent use. Keys, once unsealed, are held in memory, and the signers
// it returns stay usable after Close.
type Store struct {
	mu    sync.Mutex
	t     *TPM
	owned bool
	dir   string
	opts  StoreOptions
	keys  map[keys.Purpose]any
	// endorsed is set once the endorsement check passed.
	endorsed bool
}

var _ keys.Store = (*Store)(nil)

// OpenStore opens the TPM-sealed key store in dir, creating dir if needed.
// With dev set it returns ErrDevMode and nothing else: development mode
// keeps keys in files, which is keys.FileStore's job, and the caller must
// choose it openly. Without a TPM it returns an error matching ErrNoTPM.
func OpenStore(dev bool, dir string, opts StoreOptions) (*Store, error) {
	if dev {
		return nil, ErrDevMode
	}
	if opts.Authority != nil && opts.Approval == nil {
		return nil, fmt.Errorf("open the key store: %w: keys are sealed to the operator's "+
			"approvals and none was given for this boot", ErrNotApproved)
	}
	if opts.Authority != nil {
		if err := opts.Approval.Verify(opts.Authority); err != nil {
			return nil, fmt.Errorf("open the key store: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open the key store: %w", err)
	}
	s := &Store{t: opts.TPM, dir: dir, opts: opts, keys: map[keys.Purpose]any{}}
	if s.t == nil {
		t, err := Open()
		if err != nil {
			return nil, fmt.Errorf("open the key store: %w", err)
		}
		s.t, s.owned = t, true
	}
	return s, nil
}

// path is the blob file of purpose p.
func (s *Store) path(p keys.Purpose) string {
	return filepath.Join(s.dir, string(p)+".sealed")
}

// Signer returns the ECDSA P-256 key of purpose p (keys.Signing or
// keys.Authentication), unsealing it, or generating and sealing it on first
// use. A blob that exists but does not unseal is an error, never a reason
// to make a new key: the certificate of the old one is registered.
func (s *Store) Signer(p keys.Purpose) (crypto.Signer, error) {
	if p != keys.Signing && p != keys.Authentication {
		return nil, fmt.Errorf("key store: %q is not a signing key purpose", p)
	}
	k, err := s.get(p, func() ([]byte, error) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		return k.Bytes()
	}, func(secret []byte) (any, error) {
		return ecdsa.ParseRawPrivateKey(elliptic.P256(), secret)
	})
	if err != nil {
		return nil, err
	}
	return k.(*ecdsa.PrivateKey), nil
}

// Secret returns the 32-byte secret of purpose p (keys.LogEncryption),
// unsealing it, or generating and sealing it on first use. Each call
// returns a fresh copy.
func (s *Store) Secret(p keys.Purpose) ([]byte, error) {
	if p != keys.LogEncryption {
		return nil, fmt.Errorf("key store: %q is not a secret purpose", p)
	}
	k, err := s.get(p, func() ([]byte, error) {
		b := make([]byte, 32)
		_, err := rand.Read(b)
		return b, err
	}, func(secret []byte) (any, error) {
		if len(secret) != 32 {
			return nil, fmt.Errorf("sealed secret has %d bytes, not 32", len(secret))
		}
		return secret, nil
	})
	if err != nil {
		return nil, err
	}
	return bytes.Clone(k.([]byte)), nil
}

// get returns the key of p from memory, its blob, or a new one made by
// generate; parse turns the unsealed bytes into the key.
func (s *Store) get(p keys.Purpose, generate func() ([]byte, error),
	parse func([]byte) (any, error)) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.t == nil {
		return nil, errors.New("key store is closed")
	}
	if k, ok := s.keys[p]; ok {
		return k, nil
	}

	path := s.path(p)
	if _, err := os.Lstat(path); err == nil {
		return s.unsealFile(p, path, parse)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read the %s key: %w", p, err)
	}

	if err := s.checkEndorsement(); err != nil {
		return nil, fmt.Errorf("seal the new %s key: %w", p, err)
	}
	opts, err := s.sealOptions()
	if err != nil {
		return nil, fmt.Errorf("seal the new %s key: %w", p, err)
	}
	secret, err := generate()
	if err != nil {
		return nil, fmt.Errorf("generate the %s key: %w", p, err)
	}
	k, err := parse(secret)
	if err != nil {
		return nil, fmt.Errorf("generate the %s key: %w", p, err)
	}
	b, err := s.t.Seal(secret, opts)
	if err != nil {
		return nil, fmt.Errorf("seal the new %s key: %w", p, err)
	}
	// Unseal once before the blob is written, so that a key the box could
	// not unseal at its next start is never handed out.
	back, err := s.t.Unseal(b, s.opts.Approval)
	if err != nil {
		return nil, fmt.Errorf("seal the new %s key: it does not unseal: %w", p, err)
	}
	if !bytes.Equal(back, secret) {
		return nil, fmt.Errorf("seal the new %s key: it unseals to other bytes", p)
	}
	err = CreateBlobFile(path, b)
	if errors.Is(err, fs.ErrExist) {
		// Another process sealed its key first; that one is the key.
		return s.unsealFile(p, path, parse)
	}
	if err != nil {
		return nil, fmt.Errorf("store the new %s key: %w", p, err)
	}
	s.keys[p] = k
	return k, nil
}

// checkEndorsement runs the check of StoreOptions.EKRoots once.
func (s *Store) checkEndorsement() error {
	if s.opts.EKRoots == nil || s.endorsed {
		return nil
	}
	_, err := s.t.CheckEndorsement(s.opts.EKRoots, s.opts.EKIntermediates)
	if err != nil && !(s.opts.EKOptional && errors.Is(err, ErrNoEKCertificate)) {
		return err
	}
	s.endorsed = true
	return nil
}

// sealOptions are the options new keys are sealed with. Keys sealed to an
// authority are sealed for the base of this TPM's anti-rollback counter
// when the approval names one, which opens the counter (defining it on a
// new box), and else for the approval's base.
func (s *Store) sealOptions() (SealOptions, error) {
	opts := SealOptions{PCRs: s.opts.PCRs, Authority: s.opts.Authority}
	a := s.opts.Approval
	if opts.Authority == nil || a == nil {
		return opts, nil
	}
	opts.Base = a.Base
	if a.Counter != 0 {
		c, err := s.t.Counter(a.Counter, opts.Authority)
		if err != nil {
			return SealOptions{}, err
		}
		opts.Base = c.Base()
	}
	return opts, nil
}

// unsealFile unseals and caches the key of p from the blob at path.
func (s *Store) unsealFile(p keys.Purpose, path string,
	parse func([]byte) (any, error)) (any, error) {
	b, err := ReadBlobFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the %s key: %w", p, err)
	}
	secret, err := s.t.Unseal(b, s.opts.Approval)
	if err != nil {
		return nil, fmt.Errorf("unseal the %s key from %s: %w", p, path, err)
	}
	k, err := parse(secret)
	if err != nil {
		return nil, fmt.Errorf("unseal the %s key from %s: %w", p, path, err)
	}
	s.keys[p] = k
	return k, nil
}

// Close forgets the cached keys (signers already returned stay usable) and
// closes the TPM if OpenStore opened it.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.keys)
	t := s.t
	s.t = nil
	if s.owned && t != nil {
		return t.Close()
	}
	return nil
}
