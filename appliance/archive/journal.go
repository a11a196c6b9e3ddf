package archive

import (
	"bufio"
	"bytes"
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
	"strconv"
	"strings"
	"time"
)

// Access is one line of the access journal: who read which message log
// archives, when, to do what, and with what outcome. Clause 3.8.4 names who
// may read the logs and what they may do; clause 6.8 wants such events kept.
type Access struct {
	// Prev is the SHA-256, in hex, of the line before this one as written
	// (without its newline); all zero on the first line. RecordAccess sets
	// it, chaining the lines so that an edited or removed line breaks the
	// link of the line after it.
	Prev string    `json:"prev"`
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

// zeroHash is the Prev of a journal's first line.
var zeroHash = strings.Repeat("0", 2*sha256.Size)

// RecordAccess appends a to the journal at path (JSON, one object a line),
// chained to the line before (Access.Prev, which it sets), and syncs it.
// Concurrent writers on one machine take turns under a file lock. Readers
// must call it before opening archives and refuse to go on when it fails:
// an access that cannot be recorded does not happen.
//
// TODO: the journal is neither signed nor sent to the portal (6.8), so
// whoever can write the file can rewrite it whole or cut its last lines,
// and a reader who decrypts with openssl instead of qapi leaves no line in it.
func RecordAccess(path string, a Access) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("access journal: %w", err)
	}
	err = recordLocked(f, a)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("access journal %s: %w", path, err)
	}
	return nil
}

func recordLocked(f *os.File, a Access) error {
	if err := lockFile(f); err != nil {
		return fmt.Errorf("locking: %w", err)
	}
	defer unlockFile(f)
	last, torn, err := lastLine(f)
	if err != nil {
		return err
	}
	a.Prev = zeroHash
	if last != nil {
		sum := sha256.Sum256(last)
		a.Prev = hex.EncodeToString(sum[:])
	}
	line, err := json.Marshal(a)
	if err != nil {
		return err
	}
	if torn {
		// A line cut short by a crash stays, as the broken line it is;
		// this one starts on a line of its own.
		line = append([]byte{'\n'}, line...)
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		return err
	}
	return f.Sync()
}

// lastLine returns the last line of f without its newline (nil when f is
// empty), and whether f ends without a newline.
func lastLine(f *os.File) ([]byte, bool, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, false, err
	}
	size := fi.Size()
	if size == 0 {
		return nil, false, nil
	}
	var tail []byte
	for chunk := int64(4096); ; chunk *= 2 {
		n := min(chunk, size)
		tail = make([]byte, n)
		if _, err := f.ReadAt(tail, size-n); err != nil {
			return nil, false, fmt.Errorf("reading its last line: %w", err)
		}
		// tail ends where the file does.
		torn := tail[len(tail)-1] != '\n'
		body := tail
		if !torn {
			body = tail[:len(tail)-1]
		}
		if i := bytes.LastIndexByte(body, '\n'); i >= 0 || n == size {
			return body[i+1:], torn, nil
		}
	}
}

// JournalError reports the first line of an access journal that breaks its
// chain: it does not parse, or its Prev is not the hash of the line before.
type JournalError struct {
	Path   string
	Line   int // from 1
	Reason string
}

// Error names the file, the line and the fault.
func (e *JournalError) Error() string {
	return fmt.Sprintf("%s: line %d: %s", e.Path, e.Line, e.Reason)
}

var _ error = &JournalError{}

// maxJournalLine bounds one line of the journal when checking it.
const maxJournalLine = 16 << 20

// VerifyJournal checks the chain of the access journal at path and returns
// its number of lines, or a *JournalError naming the first line that breaks
// the chain. A line edited or removed in the middle breaks the link of the
// line after it, which is then the line named. Cutting the last lines, or
// rewriting the file whole, goes unnoticed.
func VerifyJournal(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("access journal: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, maxJournalLine)
	prev, n := zeroHash, 0
	for sc.Scan() {
		n++
		var a Access
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			return n - 1, &JournalError{Path: path, Line: n,
				Reason: "does not parse as a journal line: " + err.Error()}
		}
		if a.Prev != prev {
			reason := "its prev is not the hash of line " + strconv.Itoa(n-1) +
				": that line was altered, or lines were removed before this one"
			if n == 1 {
				reason = "the first line's prev is not zero: lines were removed before it"
			}
			return n - 1, &JournalError{Path: path, Line: n, Reason: reason}
		}
		sum := sha256.Sum256(sc.Bytes())
		prev = hex.EncodeToString(sum[:])
	}
	if err := sc.Err(); err != nil {
		return n, &JournalError{Path: path, Line: n + 1, Reason: err.Error()}
	}
	return n, nil
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
