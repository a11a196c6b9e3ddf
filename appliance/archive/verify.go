package archive

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"mime"
	"os"
	"sort"
	"strings"

	"github.com/qapi-az/qapi/appliance/cms"
	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/messagelog"
	"github.com/qapi-az/qapi/appliance/sign"
	"github.com/qapi-az/qapi/appliance/timestamp"
)

// Problem is one thing wrong with an archive: a file, an entry of it
// (Seq 0 when the fault is not in one entry), and what is wrong.
type Problem struct {
	File string
	Seq  uint64
	What string
}

// String renders the problem as "file: entry n: what".
func (p Problem) String() string {
	if p.Seq == 0 {
		return fmt.Sprintf("%s: %s", p.File, p.What)
	}
	return fmt.Sprintf("%s: entry %d: %s", p.File, p.Seq, p.What)
}

// FileReport sums up one file that could be opened.
type FileReport struct {
	File        string
	First, Last uint64
	// Messages counts the signed messages checked; Metadata and Links the
	// entries kept at those levels; Stamps the time stamps checked.
	Messages, Metadata, Links, Stamps int
	// Unstamped counts the entries after the last time stamp of the file.
	Unstamped int
}

// Report is the outcome of Verify. The archives verify when Problems is
// empty.
type Report struct {
	Files    []FileReport
	Problems []Problem
}

// OK reports whether no problem was found.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// VerifyOptions say how to check archives.
type VerifyOptions struct {
	// Key is the reader's private key (ECDSA P-256).
	Key *ecdsa.PrivateKey
	// SignRoots are the certification centres of the members' signing
	// certificates. With them each message is checked as the security
	// server checked it (sign.Verify: chain at the entry's time, the right
	// member). Without them only each CMS signature is checked (cms.Verify).
	SignRoots *x509.CertPool
	// TSARoots hold the trusted TSA certificate or its CA. Without them the
	// tokens' signatures and imprints are checked, not who made them.
	TSARoots *x509.CertPool
	// RequireStamps makes an entry no stamp covers a problem.
	RequireStamps bool
}

// Open decrypts an archive file with a reader's key and parses its
// container, without verifying it.
func Open(path string, key *ecdsa.PrivateKey) (*Contents, []byte, error) {
	der, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	plain, err := decrypt(der, key)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	c, err := parseContainer(plain)
	if err != nil {
		return nil, plain, fmt.Errorf("%s: %w", path, err)
	}
	return c, plain, nil
}

// Verify decrypts each file with the reader's key and checks everything in
// it: each entry's hash and link, each message's signature, each time stamp,
// and that the files continue one chain without gaps. It reports every
// problem by file and entry and goes on; it never skips an entry silently.
//
// TODO: Verify cannot tell that files before the first or after the last
// one given are missing (a deleted newest file goes unnoticed) without the
// live store's archive position to compare with.
func Verify(paths []string, opts VerifyOptions) *Report {
	r := &Report{}
	type opened struct {
		path string
		m    Manifest
	}
	var ok []opened
	for _, p := range paths {
		c, _, err := Open(p, opts.Key)
		if err != nil {
			r.Problems = append(r.Problems, Problem{File: p, What: "cannot be read: " +
				strings.TrimPrefix(err.Error(), p+": ")})
			continue
		}
		fr, probs := checkFile(p, c, checkOptions{signRoots: opts.SignRoots,
			tsaRoots: opts.TSARoots, requireStamps: opts.RequireStamps})
		r.Files = append(r.Files, fr)
		r.Problems = append(r.Problems, probs...)
		ok = append(ok, opened{p, c.Manifest})
	}
	// The files must continue one chain (3.8.4: nothing may go missing
	// between two archives).
	sort.Slice(ok, func(i, j int) bool { return ok[i].m.First < ok[j].m.First })
	for i, f := range ok {
		if i == 0 {
			if f.m.First == 1 && f.m.Prev != hex.EncodeToString(make([]byte, 32)) {
				r.Problems = append(r.Problems, Problem{File: f.path,
					What: "the first entry of the log links to a non-zero hash"})
			}
			continue
		}
		before := ok[i-1]
		switch {
		case f.m.First <= before.m.Last:
			r.Problems = append(r.Problems, Problem{File: f.path, What: fmt.Sprintf(
				"entries %d to %d overlap %s", f.m.First, before.m.Last, before.path)})
		case f.m.First > before.m.Last+1:
			r.Problems = append(r.Problems, Problem{File: f.path, What: fmt.Sprintf(
				"entries %d to %d are missing between %s and this file", before.m.Last+1,
				f.m.First-1, before.path)})
		case f.m.Prev != before.m.LastHash:
			r.Problems = append(r.Problems, Problem{File: f.path, Seq: f.m.First, What: fmt.Sprintf(
				"does not continue the chain of %s: its link differs from that file's "+
					"last hash", before.path)})
		}
	}
	return r
}

type checkOptions struct {
	signRoots, tsaRoots *x509.CertPool
	requireStamps       bool
	skipSignatures      bool
	wantPrev            *messagelog.Hash
}

func checkContents(name string, c *Contents, o checkOptions) []Problem {
	_, p := checkFile(name, c, o)
	return p
}

func checkFile(name string, c *Contents, o checkOptions) (FileReport, []Problem) {
	m := c.Manifest
	fr := FileReport{File: name, First: m.First, Last: m.Last}
	var probs []Problem
	add := func(seq uint64, format string, args ...any) {
		probs = append(probs, Problem{File: name, Seq: seq, What: fmt.Sprintf(format, args...)})
	}

	var prev messagelog.Hash
	prevKnown := unhex(m.Prev, prev[:]) == nil
	if !prevKnown {
		add(0, "manifest.json: prev is not a hash")
	}
	if o.wantPrev != nil && prev != *o.wantPrev {
		add(0, "manifest.json: prev is not the hash of the entry before the file")
	}
	hashes := map[uint64]messagelog.Hash{}
	for i := range c.Entries {
		e := &c.Entries[i]
		if e.Problem != "" {
			add(e.Seq, "%s", e.Problem)
			prevKnown = false
			continue
		}
		if prevKnown && e.Prev != prev {
			add(e.Seq, "chain broken: its link differs from the hash of entry %d", e.Seq-1)
		}
		h := e.Hash
		switch e.Level {
		case LevelLink:
			fr.Links++
		case LevelMetadata, LevelFull:
			if e.Level == LevelFull && sha256.Sum256(e.Signed) != e.SignedSHA256 {
				add(e.Seq, "the signed message does not match its recorded digest")
			}
			if got := e.Entry.Hash(); got != e.Hash {
				add(e.Seq, "the recorded hash differs from the hash of the entry's content")
				h = got
			}
			if e.Level == LevelMetadata {
				fr.Metadata++
				break
			}
			fr.Messages++
			if !o.skipSignatures {
				if err := checkSignature(&e.Entry, o.signRoots); err != nil {
					add(e.Seq, "signature: %v", err)
				}
			}
		}
		hashes[e.Seq] = h
		prev, prevKnown = h, true
	}
	var last messagelog.Hash
	if unhex(m.LastHash, last[:]) != nil || (prevKnown && prev != last) {
		add(m.Last, "manifest.json: lastHash is not the hash of the last entry")
	}

	var stampedTo uint64
	for _, s := range m.Stamps {
		fr.Stamps++
		h, ok := hashes[s.Last]
		if !ok {
			add(0, "time stamp %s covers entry %d, which the file does not verify", s.File,
				s.Last)
			continue
		}
		if s.Head != hex.EncodeToString(h[:]) {
			add(s.Last, "time stamp %s: its head is not the hash of the entry", s.File)
		}
		if err := checkToken(c.Tokens[s.File], h[:], o.tsaRoots); err != nil {
			add(s.Last, "time stamp %s: %v", s.File, err)
			continue
		}
		stampedTo = max(stampedTo, s.Last)
	}
	if stampedTo < m.Last {
		fr.Unstamped = int(m.Last - max(stampedTo, m.First-1))
		if o.requireStamps {
			add(0, "entries %d to %d are covered by no time stamp", max(stampedTo+1, m.First),
				m.Last)
		}
	}
	return fr, probs
}

// checkToken checks an RFC 3161 token over digest: fully with roots, else
// its signature and imprint.
func checkToken(token, digest []byte, roots *x509.CertPool) error {
	if roots != nil {
		_, err := timestamp.VerifyToken(token, digest, roots)
		return err
	}
	signed, err := cms.Verify(token, nil)
	if err != nil {
		return err
	}
	if !signed.ContentType.Equal(cms.OIDTSTInfo) {
		return fmt.Errorf("the token does not hold a TSTInfo")
	}
	info, err := timestamp.ParseInfo(signed.Content)
	if err != nil {
		return err
	}
	if !bytes.Equal(info.Digest, digest) {
		return fmt.Errorf("the token stamps another digest")
	}
	return nil
}

// checkSignature checks an archived message: with roots as the security
// server did (the signer is the client's member for a request, the
// provider's for a response, clause 2.2.1), else its CMS signature alone.
func checkSignature(e *messagelog.Entry, roots *x509.CertPool) error {
	if roots != nil {
		var member ident.Client
		var err error
		if e.Kind == messagelog.KindResponse {
			var svc ident.Service
			svc, err = ident.ParseService(e.Service)
			member = svc.Client
		} else {
			member, err = ident.ParseClient(e.Client)
		}
		if err != nil {
			return fmt.Errorf("the entry names no member to check the signer against: %w", err)
		}
		_, err = sign.Verify(e.Signed, e.ContentType, sign.VerifyOptions{Roots: roots,
			Now: e.Time, Member: member, MaxBytes: len(e.Signed) + 1})
		return err
	}
	entity, sig, err := splitSigned(e.Signed, e.ContentType)
	if err != nil {
		return err
	}
	_, err = cms.Verify(sig, entity)
	return err
}

// splitSigned returns the signed entity and the DER signature of a
// multipart/signed body (RFC 1847): the first part as a whole MIME entity,
// and the base64 body of the second.
func splitSigned(body []byte, contentType string) (entity, sig []byte, err error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/signed" || params["boundary"] == "" {
		return nil, nil, fmt.Errorf("content type %q is not multipart/signed", contentType)
	}
	delim := []byte("--" + params["boundary"])
	if !bytes.HasPrefix(body, append(delim, "\r\n"...)) {
		return nil, nil, fmt.Errorf("the body does not start with its boundary")
	}
	rest := body[len(delim)+2:]
	i := bytes.Index(rest, append([]byte("\r\n"), delim...))
	if i < 0 {
		return nil, nil, fmt.Errorf("the body has one part; multipart/signed has two")
	}
	entity, rest = rest[:i], rest[i+2+len(delim):]
	if !bytes.HasPrefix(rest, []byte("\r\n")) {
		return nil, nil, fmt.Errorf("the signature part is missing")
	}
	rest = rest[2:]
	end := bytes.Index(rest, append(append([]byte("\r\n"), delim...), "--"...))
	if end < 0 {
		return nil, nil, fmt.Errorf("the body has no closing boundary")
	}
	part := rest[:end]
	hdrEnd := bytes.Index(part, []byte("\r\n\r\n"))
	if hdrEnd < 0 {
		return nil, nil, fmt.Errorf("the signature part has no header")
	}
	b64 := bytes.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, part[hdrEnd+4:])
	sig, err = base64.StdEncoding.DecodeString(string(b64))
	if err != nil {
		return nil, nil, fmt.Errorf("the signature part is not base64: %w", err)
	}
	return entity, sig, nil
}
