package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// DevMode is the notice that every program using a FileStore must print
// (log, console banner) when it starts: a FileStore keeps keys in plain
// files, without a TPM, which is for development and the sandbox only
// (clause 6.2.3 wants the keys protected).
const DevMode = "DEVELOPMENT MODE: the security server's keys are kept in plain files " +
	"without a TPM; anyone who can read the key directory can sign as this member. " +
	"Never use this mode for a real exchange."

// PEM block types of the files a FileStore writes.
const (
	pemPrivateKey = "PRIVATE KEY"     // PKCS #8
	pemSecret     = "QAPI SECRET KEY" // 32 raw bytes
)

// secretSize is the size of a symmetric secret (an AES-256 or
// ChaCha20-Poly1305 key).
const secretSize = 32

// maxKeyFile bounds what a FileStore reads from one file.
const maxKeyFile = 16 << 10

// FileStore is the development Store: each key is a file in one
// directory, created with mode 0600 on first use and never overwritten.
// Signing and Authentication keys are ECDSA P-256 keys in PKCS #8 PEM files
// (signing.key, authentication.key); the LogEncryption secret is 32 bytes
// in a PEM file (log-encryption.secret).
//
// It is safe for concurrent use, also by several processes sharing the
// directory: a key is written to a temporary file opened with O_EXCL and
// linked to its name, which fails rather than replaces when another
// process got there first; the loser then reads the winner's key. (A
// rename would silently replace it.)
//
// Keys are not sealed to anything: see DevMode. Signers it returns stay
// usable after Close.
type FileStore struct {
	dir string

	mu      sync.Mutex
	closed  bool
	signers map[Purpose]crypto.Signer
	secrets map[Purpose][]byte
}

var _ Store = (*FileStore)(nil)

// NewFileStore opens the key directory dir, creating it with mode 0700 if
// it does not exist. It creates no key yet.
func NewFileStore(dir string) (*FileStore, error) {
	if dir == "" {
		return nil, errors.New("keys: the key directory is not set")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keys: creating key directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("keys: key directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("keys: key directory %s is not a directory", dir)
	}
	return &FileStore{
		dir:     dir,
		signers: make(map[Purpose]crypto.Signer),
		secrets: make(map[Purpose][]byte),
	}, nil
}

// Dir returns the key directory.
func (s *FileStore) Dir() string { return s.dir }

// Path returns the file that holds the key or secret for p.
func (s *FileStore) Path(p Purpose) string {
	if p == LogEncryption {
		return filepath.Join(s.dir, string(p)+".secret")
	}
	return filepath.Join(s.dir, string(p)+".key")
}

// Signer returns the ECDSA P-256 key for p (Signing or Authentication),
// generating and writing it on first use.
func (s *FileStore) Signer(p Purpose) (crypto.Signer, error) {
	return s.signer(p, true)
}

// ExistingSigner returns the key for p like Signer, but returns an error
// wrapping ErrNotFound instead of generating one.
func (s *FileStore) ExistingSigner(p Purpose) (crypto.Signer, error) {
	return s.signer(p, false)
}

func (s *FileStore) signer(p Purpose, create bool) (crypto.Signer, error) {
	if p != Signing && p != Authentication {
		return nil, fmt.Errorf("keys: %q is not a signing purpose; want %q or %q",
			p, Signing, Authentication)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("keys: the file store is closed")
	}
	if k, ok := s.signers[p]; ok {
		return k, nil
	}

	path := s.Path(p)
	der, err := s.readOrCreate(path, pemPrivateKey, create, func() ([]byte, error) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		return x509.MarshalPKCS8PrivateKey(k)
	})
	if err != nil {
		return nil, err
	}
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, damaged(path, err)
	}
	k, ok := parsed.(*ecdsa.PrivateKey)
	if !ok || k.Curve != elliptic.P256() {
		return nil, damaged(path, fmt.Errorf("holds a %T, want an ECDSA P-256 key", parsed))
	}
	s.signers[p] = k
	return k, nil
}

// Secret returns a copy of the 32-byte secret for p (LogEncryption),
// generating and writing it on first use.
func (s *FileStore) Secret(p Purpose) ([]byte, error) {
	if p != LogEncryption {
		return nil, fmt.Errorf("keys: %q is not a secret's purpose; want %q", p, LogEncryption)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("keys: the file store is closed")
	}
	if k, ok := s.secrets[p]; ok {
		return bytes.Clone(k), nil
	}

	path := s.Path(p)
	k, err := s.readOrCreate(path, pemSecret, true, func() ([]byte, error) {
		k := make([]byte, secretSize)
		_, err := rand.Read(k)
		return k, err
	})
	if err != nil {
		return nil, err
	}
	if len(k) != secretSize {
		return nil, damaged(path, fmt.Errorf("holds %d bytes, want %d", len(k), secretSize))
	}
	s.secrets[p] = k
	return bytes.Clone(k), nil
}

// Close forgets the keys it holds; later calls to Signer and Secret fail.
func (s *FileStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	clear(s.signers)
	for _, k := range s.secrets {
		clear(k)
	}
	clear(s.secrets)
	return nil
}

// readOrCreate returns the content of the PEM block in path, creating the
// file with the output of generate when it does not exist and create is
// set.
func (s *FileStore) readOrCreate(path, blockType string, create bool,
	generate func() ([]byte, error)) ([]byte, error) {
	content, err := readKeyFile(path, blockType)
	if !errors.Is(err, fs.ErrNotExist) {
		return content, err
	}
	if !create {
		return nil, fmt.Errorf("keys: %s: %w", path, ErrNotFound)
	}

	content, err = generate()
	if err != nil {
		return nil, fmt.Errorf("keys: generating %s: %w", path, err)
	}
	won, err := createExclusive(path, pem.EncodeToMemory(&pem.Block{
		Type: blockType, Bytes: content}))
	if err != nil {
		return nil, fmt.Errorf("keys: writing %s: %w", path, err)
	}
	if !won {
		// Another process wrote the key between our read and our link;
		// its key is the key.
		return readKeyFile(path, blockType)
	}
	return content, nil
}

// createExclusive writes data to path unless path exists, atomically: no
// reader ever sees a partial file, and an existing file is never replaced.
// It reports whether this call created the file.
func createExclusive(path string, data []byte) (bool, error) {
	dir := filepath.Dir(path)
	// CreateTemp opens with O_EXCL and mode 0600.
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, err
	}
	// Make the new name durable.
	d, err := os.Open(dir)
	if err != nil {
		return true, err
	}
	defer d.Close()
	return true, d.Sync()
}

// readKeyFile reads a PEM file of blockType, refusing one that others
// could read; a missing file gives an error wrapping fs.ErrNotExist.
func readKeyFile(path, blockType string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("keys: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("keys: %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("keys: %s has mode %04o, so others can read the key; "+
			"run chmod 600 on it, and consider the key compromised", path, perm)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("keys: reading %s: %w", path, err)
	}
	if len(data) > maxKeyFile {
		return nil, damaged(path, fmt.Errorf("is over %d bytes", maxKeyFile))
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != blockType || len(bytes.TrimSpace(rest)) != 0 {
		return nil, damaged(path, fmt.Errorf("is not one PEM %s block", blockType))
	}
	return block.Bytes, nil
}

// damaged says that a key file is unreadable and what to do.
func damaged(path string, err error) error {
	remedy := "remove it to make a new key and then request a new certificate"
	if filepath.Ext(path) == ".secret" {
		remedy = "a new secret cannot read the message log written so far"
	}
	return fmt.Errorf("keys: key file %s is damaged: %w; restore it from a backup, or %s",
		path, err, remedy)
}
