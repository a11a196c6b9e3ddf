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
	"time"

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
	// Head is the archive head compared with, nil without one.
	Head *Head
	// Notes say which checks could not be made.
	Notes []string
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
	// Head is the archive head file (HeadName) to compare the files with:
	// the oldest must start where it says the archives start, the newest
	// end where it says they end. Its signer is checked with SignRoots.
	Head string
	// Partial checks only the files given: it does not require them to
	// start at the log's first entry, and with no Head nothing is said of
	// files before or after them.
	Partial bool
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
// The files must reach back to the log's first entry, or with a Head to
// where the head says the kept archives start, and with a Head forward to
// its last entry: a missing oldest or newest file is a problem naming the
// entries missing. Without a Head, a missing newest file cannot be told:
// Report.Notes says so.
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
	ends := make([]fileEnds, len(ok))
	for i, f := range ok {
		ends[i] = fileEnds{f.path, f.m.First, f.m.Last, f.m.LastHash}
	}
	r.checkEnds(ends, opts)
	return r
}

// fileEnds is where one file of the chain starts and ends.
type fileEnds struct {
	path        string
	first, last uint64
	lastHash    string
}

// checkEnds compares the oldest and newest of the files (sorted, all that
// could be opened) with the log's first entry or the archive head.
func (r *Report) checkEnds(files []fileEnds, opts VerifyOptions) {
	start := uint64(1)
	if opts.Head != "" {
		h, signer, err := ReadHead(opts.Head, opts.SignRoots)
		if err != nil {
			r.Problems = append(r.Problems, Problem{File: opts.Head, What: "the archive head " +
				"cannot be read: " + strings.TrimPrefix(err.Error(), opts.Head+": ")})
			return
		}
		r.Head = h
		start = h.First
		if opts.SignRoots == nil {
			r.Notes = append(r.Notes, fmt.Sprintf("the archive head is signed by %q; without "+
				"-sign-roots its certificate was not checked", signer.Subject.SerialNumber))
		}
		if len(files) == 0 {
			return
		}
		newest := files[len(files)-1]
		switch {
		case newest.last < h.Last:
			r.Problems = append(r.Problems, Problem{File: opts.Head, What: fmt.Sprintf(
				"entries %d to %d are missing: the archive head of %s says the archives "+
					"end at entry %d, and the newest file given, %s, ends at entry %d",
				newest.last+1, h.Last, h.Time.Format(time.RFC3339), h.Last, newest.path,
				newest.last)})
		case newest.last == h.Last && newest.lastHash != h.LastHash:
			r.Problems = append(r.Problems, Problem{File: newest.path, Seq: h.Last,
				What: "the last hash differs from the one the archive head records"})
		}
	} else if !opts.Partial {
		r.Notes = append(r.Notes, "no archive head: whether files after the newest one "+
			"given are missing cannot be told")
	}
	if len(files) == 0 || opts.Partial && opts.Head == "" {
		return
	}
	if oldest := files[0]; oldest.first > start {
		what := fmt.Sprintf("entries %d to %d are missing before this file: the archives "+
			"start at entry %d", start, oldest.first-1, start)
		if opts.Head == "" {
			what += " (the log's first entry; give the archive head if older files were " +
				"pruned)"
		}
		r.Problems = append(r.Problems, Problem{File: oldest.path, What: what})
	}
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
