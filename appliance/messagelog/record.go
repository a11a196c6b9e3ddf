package messagelog

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
)

// HashSize is the size of a chain link: a SHA-256 digest.
const HashSize = sha256.Size

// Hash is a link of the hash chain: the SHA-256 of an entry's canonical
// encoding.
type Hash [HashSize]byte

// Entry is a Record as the log stored it: its place in the sequence and the
// link to the entry before it.
type Entry struct {
	// Seq numbers entries from 1 without gaps, across restarts and archives.
	Seq uint64
	// Prev is the Hash of entry Seq-1; all zero for entry 1.
	Prev Hash
	Record
	// SignedSHA256 is the SHA-256 of Record.Signed. The log sets it on every
	// entry it returns; an archive that keeps an entry's metadata without
	// its body sets it alone, which is enough to recompute the chain.
	SignedSHA256 Hash
}

// canonicalMagic starts every canonical encoding and names its version.
const canonicalMagic = "QAPI-MESSAGELOG-1"

// Canonical returns the entry's canonical encoding, the bytes its Hash is
// taken over. docs/messagelog.md describes it so that anybody can recompute
// the chain: the magic "QAPI-MESSAGELOG-1", then nine fields, each a 4-byte
// big-endian length and the bytes: Seq (8 bytes big-endian), Prev (32),
// Time (Unix nanoseconds, 8 bytes big-endian, two's complement), Kind,
// MessageID, Client, Service, ContentType, and the SHA-256 of Signed (32).
// The chain covers the body through its digest, so that an archive holding
// an entry's metadata only still proves the chain. When SignedSHA256 is
// set it is used, else the digest of Signed is computed.
func (e *Entry) Canonical() []byte {
	return e.appendCanonical(make([]byte, 0, e.canonicalSize()))
}

// canonicalSize is the length of the canonical encoding.
func (e *Entry) canonicalSize() int {
	return len(canonicalMagic) + 9*4 + 8 + HashSize + 8 + len(e.Kind) + len(e.MessageID) +
		len(e.Client) + len(e.Service) + len(e.ContentType) + HashSize
}

// appendCanonical appends the canonical encoding to b.
func (e *Entry) appendCanonical(b []byte) []byte {
	digest := e.SignedSHA256
	if digest == (Hash{}) {
		digest = sha256.Sum256(e.Signed)
	}
	b = append(b, canonicalMagic...)
	var u [8]byte
	binary.BigEndian.PutUint64(u[:], e.Seq)
	b = appendField(b, u[:])
	b = appendField(b, e.Prev[:])
	binary.BigEndian.PutUint64(u[:], uint64(e.Time.UnixNano()))
	b = appendField(b, u[:])
	b = appendString(b, string(e.Kind))
	b = appendString(b, e.MessageID)
	b = appendString(b, e.Client)
	b = appendString(b, e.Service)
	b = appendString(b, e.ContentType)
	return appendField(b, digest[:])
}

// Hash returns the SHA-256 of the entry's canonical encoding: the Prev of
// the entry after it.
func (e *Entry) Hash() Hash { return sha256.Sum256(e.Canonical()) }

func appendField(b, f []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
	return append(b, f...)
}

func appendString(b []byte, f string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
	return append(b, f...)
}

// encodeStored returns what the store seals for an entry: its canonical
// encoding followed by one more field, the body itself.
func encodeStored(e *Entry) []byte {
	return appendField(e.Canonical(), e.Signed)
}

// decodeStored parses what encodeStored made and checks the body against
// its digest.
func decodeStored(b []byte) (*Entry, error) {
	if len(b) < len(canonicalMagic) || string(b[:len(canonicalMagic)]) != canonicalMagic {
		return nil, errors.New("not a message log entry: bad magic")
	}
	b = b[len(canonicalMagic):]
	var f [10][]byte
	for i := range f {
		if len(b) < 4 {
			return nil, fmt.Errorf("entry truncated in field %d", i)
		}
		n := binary.BigEndian.Uint32(b)
		b = b[4:]
		if uint64(len(b)) < uint64(n) {
			return nil, fmt.Errorf("entry truncated in field %d", i)
		}
		f[i], b = b[:n], b[n:]
	}
	if len(b) != 0 {
		return nil, errors.New("entry has trailing bytes")
	}
	if len(f[0]) != 8 || len(f[1]) != HashSize || len(f[2]) != 8 || len(f[8]) != HashSize {
		return nil, errors.New("entry has a fixed-size field of the wrong size")
	}
	e := &Entry{Seq: binary.BigEndian.Uint64(f[0])}
	copy(e.Prev[:], f[1])
	e.Time = time.Unix(0, int64(binary.BigEndian.Uint64(f[2]))).UTC()
	e.Kind = Kind(f[3])
	e.MessageID = string(f[4])
	e.Client = string(f[5])
	e.Service = string(f[6])
	e.ContentType = string(f[7])
	e.Signed = append([]byte{}, f[9]...)
	e.SignedSHA256 = sha256.Sum256(e.Signed)
	if !bytes.Equal(e.SignedSHA256[:], f[8]) {
		return nil, errors.New("the body does not match its digest")
	}
	return e, nil
}

// sealVersion is the first byte of every sealed value in the store.
const sealVersion = 1

// sealer encrypts store values with AES-256-GCM. The additional data binds a
// value to its bucket and key, so that a value moved to another place in the
// file fails to open.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("message log key is %d bytes, want 32 (keys.LogEncryption)",
			len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("message log key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("message log key: %w", err)
	}
	return &sealer{aead: aead}, nil
}

func sealAD(bucket, key []byte) []byte {
	ad := make([]byte, 0, 2+len(bucket)+len(key))
	ad = append(ad, sealVersion, byte(len(bucket)))
	ad = append(ad, bucket...)
	return append(ad, key...)
}

// seal returns version || nonce || ciphertext of plain, bound to bucket/key.
func (s *sealer) seal(bucket, key, plain []byte) ([]byte, error) {
	ns := s.aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(plain)+s.aead.Overhead())
	out[0] = sealVersion
	// A random 96-bit nonce per value: at 2^32 values per key the collision
	// probability stays below 2^-32, far beyond a log's lifetime.
	if _, err := rand.Read(out[1 : 1+ns]); err != nil {
		return nil, fmt.Errorf("drawing a nonce: %w", err)
	}
	return s.aead.Seal(out, out[1:1+ns], plain, sealAD(bucket, key)), nil
}

// sealEntry returns what the store keeps for e under bucket/key, sealed
// as seal does, and e's Hash. It is seal(bucket, key, encodeStored(e))
// and e.Hash() in one pass: the body is hashed once, and the stored
// encoding is built and encrypted in place in the buffer returned. It sets
// e.SignedSHA256.
func (s *sealer) sealEntry(bucket, key []byte, e *Entry) ([]byte, Hash, error) {
	return s.appendSealedEntry(nil, bucket, key, e)
}

// appendSealedEntry is sealEntry appending to dst, so that the writer can
// seal a whole batch into one buffer it reuses: it returns dst extended by
// the sealed value.
func (s *sealer) appendSealedEntry(dst, bucket, key []byte, e *Entry) ([]byte, Hash, error) {
	if e.SignedSHA256 == (Hash{}) {
		e.SignedSHA256 = sha256.Sum256(e.Signed)
	}
	ns := s.aead.NonceSize()
	stored := e.canonicalSize() + 4 + len(e.Signed)
	start := len(dst)
	dst = slices.Grow(dst, 1+ns+stored+s.aead.Overhead())
	out := dst[start : start+1+ns]
	out[0] = sealVersion
	nonce := out[1 : 1+ns]
	if _, err := rand.Read(nonce); err != nil {
		return nil, Hash{}, fmt.Errorf("drawing a nonce: %w", err)
	}
	plain := e.appendCanonical(out[1+ns:])
	hash := sha256.Sum256(plain)
	plain = appendField(plain, e.Signed)
	// plain starts where the ciphertext goes: Seal encrypts in place.
	sealed := s.aead.Seal(out[:1+ns], nonce, plain, sealAD(bucket, key))
	return dst[:start+len(sealed)], hash, nil
}

// errOpen is returned (wrapped) when a sealed value fails to decrypt.
var errOpen = errors.New("decryption failed: the value was altered, moved, or the key is wrong")

func (s *sealer) open(bucket, key, sealed []byte) ([]byte, error) {
	ns := s.aead.NonceSize()
	if len(sealed) < 1+ns+s.aead.Overhead() || sealed[0] != sealVersion {
		return nil, errOpen
	}
	plain, err := s.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], sealAD(bucket, key))
	if err != nil {
		return nil, errOpen
	}
	return plain, nil
}

func seqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, seq)
}
