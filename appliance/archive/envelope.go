package archive

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// The encryption is CMS EnvelopedData (RFC 5652) with one
// KeyAgreeRecipientInfo (RFC 5753): an ephemeral ECDH P-256 key, the X9.63
// KDF with SHA-256, and AES-256 key wrap of the content key for each reader;
// the content is encrypted with AES-256-CBC. `openssl cms -decrypt` reads it.

var (
	oidEnvelopedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 3}
	oidData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidECPublicKey   = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidECDHSHA256KDF = asn1.ObjectIdentifier{1, 3, 132, 1, 11, 1}
	oidAES256Wrap    = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 45}
	oidAES256CBC     = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
)

// ErrNotRecipient is returned (wrapped) by Decrypt when the key is not one
// the file was encrypted to.
var ErrNotRecipient = errors.New("the key is not among the archive's readers")

// encrypt returns the DER ContentInfo of an EnvelopedData of plain for the
// readers, and the content key (for the archiver's own re-read check).
func encrypt(plain []byte, readers []*x509.Certificate) (der, cek []byte, err error) {
	if len(readers) == 0 {
		return nil, nil, errors.New("no reader certificates: name who may read the " +
			"archives (clause 3.8.4)")
	}
	cek = make([]byte, 32)
	iv := make([]byte, aes.BlockSize)
	if _, err := rand.Read(cek); err != nil {
		return nil, nil, err
	}
	if _, err := rand.Read(iv); err != nil {
		return nil, nil, err
	}
	// One KeyAgreeRecipientInfo per reader, each with its own ephemeral
	// key, as OpenSSL writes them: OpenSSL given a key without its
	// certificate tries only the first encrypted key of each.
	type wrapped struct {
		cert *x509.Certificate
		eph  *ecdh.PrivateKey
		key  []byte
	}
	var keys []wrapped
	for _, c := range readers {
		pub, ok := c.PublicKey.(*ecdsa.PublicKey)
		if !ok || pub.Curve != elliptic.P256() {
			return nil, nil, fmt.Errorf("reader certificate %q: key is not ECDSA P-256",
				c.Subject)
		}
		epub, err := pub.ECDH()
		if err != nil {
			return nil, nil, fmt.Errorf("reader certificate %q: %w", c.Subject, err)
		}
		eph, err := ecdh.P256().GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		z, err := eph.ECDH(epub)
		if err != nil {
			return nil, nil, fmt.Errorf("reader certificate %q: %w", c.Subject, err)
		}
		w, err := keyWrap(kdf(z), cek)
		if err != nil {
			return nil, nil, err
		}
		keys = append(keys, wrapped{c, eph, w})
	}
	content, err := cbcEncrypt(cek, iv, plain)
	if err != nil {
		return nil, nil, err
	}
	// DER orders the elements of a SET OF by their encodings.
	var infos [][]byte
	for _, k := range keys {
		var ib cryptobyte.Builder
		addKARI(&ib, k.cert, k.eph.PublicKey().Bytes(), k.key)
		info, err := ib.Bytes()
		if err != nil {
			return nil, nil, fmt.Errorf("encoding a recipient: %w", err)
		}
		infos = append(infos, info)
	}
	slices.SortFunc(infos, bytes.Compare)

	var b cryptobyte.Builder
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oidEnvelopedData)
		b.AddASN1(casn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(2) // RFC 5652 6.1: a kari makes it version 2
				b.AddASN1(casn1.SET, func(b *cryptobyte.Builder) {
					for _, info := range infos {
						b.AddBytes(info)
					}
				})
				b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidData)
					b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(oidAES256CBC)
						b.AddASN1OctetString(iv)
					})
					b.AddASN1(casn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) {
						b.AddBytes(content)
					})
				})
			})
		})
	})
	der, err = b.Bytes()
	if err != nil {
		return nil, nil, fmt.Errorf("encoding the EnvelopedData: %w", err)
	}
	return der, cek, nil
}

// addKARI adds a KeyAgreeRecipientInfo for one reader: the originator's
// ephemeral public key, the key agreement and wrap algorithms, and the
// wrapped content key for the reader named by issuer and serial number.
func addKARI(b *cryptobyte.Builder, cert *x509.Certificate, eph, wrapped []byte) {
	b.AddASN1(casn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
		b.AddASN1Int64(3)
		b.AddASN1(casn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.Tag(1).ContextSpecific().Constructed(),
				func(b *cryptobyte.Builder) {
					b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(oidECPublicKey)
					})
					b.AddASN1BitString(eph)
				})
		})
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidECDHSHA256KDF)
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(oidAES256Wrap)
			})
		})
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddBytes(cert.RawIssuer)
					b.AddASN1BigInt(cert.SerialNumber)
				})
				b.AddASN1OctetString(wrapped)
			})
		})
	})
}

// envelope is a parsed EnvelopedData.
type envelope struct {
	recipients []kari
	iv         []byte
	content    []byte
}

// kari is one KeyAgreeRecipientInfo.
type kari struct {
	originator []byte   // uncompressed P-256 point
	wrapped    [][]byte // the encrypted content keys
}

var errEnvelope = errors.New("not a CMS EnvelopedData with an ECDH P-256 recipient, " +
	"AES-256 key wrap and AES-256-CBC as this program writes")

func parseEnvelope(der []byte) (*envelope, error) {
	in := cryptobyte.String(der)
	var ci, wrap, ed, ris, ri, rest cryptobyte.String
	var oid asn1.ObjectIdentifier
	var version int64
	if !in.ReadASN1(&ci, casn1.SEQUENCE) || !in.Empty() ||
		!ci.ReadASN1ObjectIdentifier(&oid) || !oid.Equal(oidEnvelopedData) ||
		!ci.ReadASN1(&wrap, casn1.Tag(0).ContextSpecific().Constructed()) || !ci.Empty() ||
		!wrap.ReadASN1(&ed, casn1.SEQUENCE) || !wrap.Empty() ||
		!ed.ReadASN1Integer(&version) || version != 2 ||
		!ed.ReadASN1(&ris, casn1.SET) {
		return nil, errEnvelope
	}
	env := &envelope{}
	for !ris.Empty() {
		if !ris.ReadASN1(&ri, casn1.Tag(1).ContextSpecific().Constructed()) {
			return nil, errEnvelope
		}
		var orig, origKey, alg, kea, wrapAlg, reks cryptobyte.String
		var point asn1.BitString
		if !ri.ReadASN1Integer(&version) || version != 3 ||
			!ri.ReadASN1(&orig, casn1.Tag(0).ContextSpecific().Constructed()) ||
			!orig.ReadASN1(&origKey, casn1.Tag(1).ContextSpecific().Constructed()) ||
			!origKey.ReadASN1(&alg, casn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&oid) ||
			!oid.Equal(oidECPublicKey) || !origKey.ReadASN1BitString(&point) ||
			!ri.SkipOptionalASN1(casn1.Tag(1).ContextSpecific().Constructed()) ||
			!ri.ReadASN1(&kea, casn1.SEQUENCE) || !kea.ReadASN1ObjectIdentifier(&oid) ||
			!oid.Equal(oidECDHSHA256KDF) || !kea.ReadASN1(&wrapAlg, casn1.SEQUENCE) ||
			!wrapAlg.ReadASN1ObjectIdentifier(&oid) || !oid.Equal(oidAES256Wrap) ||
			!ri.ReadASN1(&reks, casn1.SEQUENCE) || !ri.Empty() {
			return nil, errEnvelope
		}
		k := kari{originator: point.Bytes}
		for !reks.Empty() {
			var rek cryptobyte.String
			var key []byte
			var rid cryptobyte.String
			var ridTag casn1.Tag
			if !reks.ReadASN1(&rek, casn1.SEQUENCE) || !rek.ReadAnyASN1Element(&rid, &ridTag) ||
				!rek.ReadASN1Bytes(&key, casn1.OCTET_STRING) || !rek.Empty() {
				return nil, errEnvelope
			}
			k.wrapped = append(k.wrapped, key)
		}
		env.recipients = append(env.recipients, k)
	}
	var eci, cea cryptobyte.String
	if !ed.ReadASN1(&eci, casn1.SEQUENCE) || !eci.ReadASN1ObjectIdentifier(&oid) ||
		!oid.Equal(oidData) || !eci.ReadASN1(&cea, casn1.SEQUENCE) ||
		!cea.ReadASN1ObjectIdentifier(&oid) || !oid.Equal(oidAES256CBC) ||
		!cea.ReadASN1Bytes(&env.iv, casn1.OCTET_STRING) || len(env.iv) != aes.BlockSize ||
		!eci.ReadASN1(&rest, casn1.Tag(0).ContextSpecific()) || !eci.Empty() {
		return nil, errEnvelope
	}
	env.content = rest
	if len(env.recipients) == 0 {
		return nil, errEnvelope
	}
	return env, nil
}

// contentKey finds the content key wrapped for key.
func (env *envelope) contentKey(key *ecdsa.PrivateKey) ([]byte, error) {
	priv, err := key.ECDH()
	if err != nil {
		return nil, err
	}
	for _, k := range env.recipients {
		pub, err := ecdh.P256().NewPublicKey(k.originator)
		if err != nil {
			return nil, fmt.Errorf("%w: originator key: %w", errEnvelope, err)
		}
		z, err := priv.ECDH(pub)
		if err != nil {
			return nil, err
		}
		kek := kdf(z)
		for _, w := range k.wrapped {
			// Unwrapping with another reader's key fails the RFC 3394 check.
			if cek, err := keyUnwrap(kek, w); err == nil && len(cek) == 32 {
				return cek, nil
			}
		}
	}
	return nil, ErrNotRecipient
}

// decrypt returns the plaintext of an EnvelopedData for the reader's key.
func decrypt(der []byte, key *ecdsa.PrivateKey) ([]byte, error) {
	env, err := parseEnvelope(der)
	if err != nil {
		return nil, err
	}
	cek, err := env.contentKey(key)
	if err != nil {
		return nil, err
	}
	return cbcDecrypt(cek, env.iv, env.content)
}

// decryptWithKey decrypts with a known content key.
func decryptWithKey(der, cek []byte) ([]byte, error) {
	env, err := parseEnvelope(der)
	if err != nil {
		return nil, err
	}
	return cbcDecrypt(cek, env.iv, env.content)
}

// kdf is the ANSI X9.63 KDF with SHA-256 of RFC 5753 section 7.2 for an
// AES-256 key-encryption key: one block over Z, the counter 1 and the DER
// ECC-CMS-SharedInfo naming id-aes256-wrap and the key length in bits.
func kdf(z []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidAES256Wrap)
		})
		b.AddASN1(casn1.Tag(2).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1OctetString(binary.BigEndian.AppendUint32(nil, 256))
		})
	})
	h := sha256.New()
	h.Write(z)
	h.Write([]byte{0, 0, 0, 1})
	h.Write(b.BytesOrPanic())
	return h.Sum(nil)
}

var wrapIV = []byte{0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6}

// keyWrap is the AES key wrap of RFC 3394.
func keyWrap(kek, key []byte) ([]byte, error) {
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	n := len(key) / 8
	a := bytes.Clone(wrapIV)
	r := bytes.Clone(key)
	buf := make([]byte, 16)
	for j := 0; j < 6; j++ {
		for i := 0; i < n; i++ {
			copy(buf, a)
			copy(buf[8:], r[8*i:8*i+8])
			block.Encrypt(buf, buf)
			t := uint64(n*j + i + 1)
			binary.BigEndian.PutUint64(a, binary.BigEndian.Uint64(buf[:8])^t)
			copy(r[8*i:], buf[8:])
		}
	}
	return append(a, r...), nil
}

// keyUnwrap reverses keyWrap and checks the integrity value.
func keyUnwrap(kek, wrapped []byte) ([]byte, error) {
	if len(wrapped) < 24 || len(wrapped)%8 != 0 {
		return nil, errors.New("wrapped key has a wrong length")
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	n := len(wrapped)/8 - 1
	a := bytes.Clone(wrapped[:8])
	r := bytes.Clone(wrapped[8:])
	buf := make([]byte, 16)
	for j := 5; j >= 0; j-- {
		for i := n - 1; i >= 0; i-- {
			t := uint64(n*j + i + 1)
			binary.BigEndian.PutUint64(buf, binary.BigEndian.Uint64(a)^t)
			copy(buf[8:], r[8*i:8*i+8])
			block.Decrypt(buf, buf)
			copy(a, buf[:8])
			copy(r[8*i:], buf[8:])
		}
	}
	if subtle.ConstantTimeCompare(a, wrapIV) != 1 {
		return nil, errors.New("key unwrap integrity check failed")
	}
	return r, nil
}

func cbcEncrypt(key, iv, plain []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	pad := aes.BlockSize - len(plain)%aes.BlockSize
	out := make([]byte, len(plain)+pad)
	copy(out, plain)
	for i := len(plain); i < len(out); i++ {
		out[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(out, out)
	return out, nil
}

var errPadding = errors.New("decrypted content has bad padding: the file is damaged or " +
	"the key is wrong")

func cbcDecrypt(key, iv, content []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	if len(content) == 0 || len(content)%aes.BlockSize != 0 {
		return nil, errPadding
	}
	out := make([]byte, len(content))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, content)
	pad := int(out[len(out)-1])
	if pad == 0 || pad > aes.BlockSize {
		return nil, errPadding
	}
	for _, p := range out[len(out)-pad:] {
		if int(p) != pad {
			return nil, errPadding
		}
	}
	return out[:len(out)-pad], nil
}
