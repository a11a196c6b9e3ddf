package archive

import (
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"time"

	"github.com/qapi-az/qapi/appliance/cms"
	"github.com/qapi-az/qapi/appliance/ident"
)

// HeadFormat names the format of the archive head.
const HeadFormat = "qapi-messagelog-archive-head/1"

// HeadName is the file name of the archive head in an archive directory.
const HeadName = "qapi-log-head.p7s"

// Head is the archive head: where the archives of one message log start and
// end. The archiver rewrites it, signed by the security server's signing
// key, after every round, so that a reader can tell that the oldest or the
// newest file is missing, which the chain of the files alone cannot show
// (3.8.4: nothing archived may go missing unnoticed).
//
// It is a DER CMS SignedData (RFC 5652) holding this JSON: `openssl cms
// -verify -inform DER -in qapi-log-head.p7s -CAfile signing-ca.pem -purpose
// any` prints it.
//
// TODO: an older head signed by the same server put back in place of the
// current one, or a head deleted with the oldest files, hides those files;
// nothing compares the head with the live store's archive position or
// time-stamps it.
type Head struct {
	Format string    `json:"format"`
	Time   time.Time `json:"time"`
	// Member is the member whose security server keeps the log; its signing
	// certificate signs the head.
	Member string `json:"member"`
	// First is the first entry of the oldest file kept: that of the oldest
	// file in the directory when the first head was written (1 for a new
	// log), moved past each file Prune deletes.
	First uint64 `json:"first"`
	// Last is the last entry archived and LastHash its hash (hex): the
	// live store's archive position when the head was written. Last is
	// First-1 when no file is kept.
	Last     uint64 `json:"last"`
	LastHash string `json:"lastHash"`
}

// HeadSigner signs the archive head: the security server's signing key
// and its certificate chain, leaf first.
type HeadSigner struct {
	Key   crypto.Signer
	Chain []*x509.Certificate
}

// fileName matches the name of an archive file and captures its first and
// last entries.
var fileName = regexp.MustCompile(`^qapi-log-(\d{20})-(\d{20})\.p7m$`)

// fileRange returns the entries an archive file's name says it holds.
func fileRange(name string) (first, last uint64, ok bool) {
	m := fileName.FindStringSubmatch(filepath.Base(name))
	if m == nil {
		return 0, 0, false
	}
	first, err1 := strconv.ParseUint(m[1], 10, 64)
	last, err2 := strconv.ParseUint(m[2], 10, 64)
	return first, last, err1 == nil && err2 == nil && first <= last
}

// writeHead signs and writes the archive head of a.Dir: its last entry is
// the live store's archive position; its first is the previous head's,
// moved past the files pruned (in order from it). A file deleted by other
// means does not move it, so that verify keeps naming it missing, and
// writeHead returns an error naming it.
func (a *Archiver) writeHead(pruned []string) error {
	if a.Head == nil {
		return nil
	}
	if len(a.Head.Chain) == 0 {
		return errors.New("archive: the head signer has no certificate")
	}
	member, _, err := ident.MemberFromCertSerial(a.Head.Chain[0].Subject.SerialNumber)
	if err != nil {
		return fmt.Errorf("archive: the head signer's certificate: %w", err)
	}
	path := filepath.Join(a.Dir, HeadName)
	st := a.Log.State()
	have, err := fileSpans(a.Dir)
	if err != nil {
		return err
	}
	// A first head starts at the oldest file there is (files pruned before
	// there was a head are gone), or after the archive position.
	first := st.Archived + 1
	if len(have) > 0 {
		first = min(first, have[0].first)
	}
	if der, err := os.ReadFile(path); err == nil {
		old, err := parseHead(der)
		if err != nil {
			return fmt.Errorf("archive: %s does not parse, so where the archives start is "+
				"unknown; move it aside after checking the files, and the next round writes "+
				"a new one: %w", path, err)
		}
		first = old.First
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("archive: reading %s: %w", path, err)
	}
	var gone []span
	for _, p := range pruned {
		if f, l, ok := fileRange(p); ok {
			gone = append(gone, span{f, l})
		}
	}
	sort.Slice(gone, func(i, j int) bool { return gone[i].first < gone[j].first })
	for _, g := range gone {
		if g.first <= first && g.last >= first {
			first = g.last + 1
		}
	}

	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	h := Head{Format: HeadFormat, Time: now().UTC(), Member: member.String(), First: first,
		Last: st.Archived, LastHash: hex.EncodeToString(st.ArchivedHash[:])}
	content, err := json.Marshal(h)
	if err != nil {
		return err
	}
	der, err := cms.Sign(content, a.Head.Key, a.Head.Chain[0], cms.SignOptions{
		SigningTime: h.Time, Certificates: a.Head.Chain[1:]})
	if err != nil {
		return fmt.Errorf("archive: signing the archive head: %w", err)
	}
	if err := writeSynced(path, der); err != nil {
		return err
	}
	if len(pruned) > 0 {
		if have, err = fileSpans(a.Dir); err != nil {
			return err
		}
	}
	return checkFiles(a.Dir, have, first, st.Archived)
}

// span is the entries first to last of one archive file.
type span struct{ first, last uint64 }

// fileSpans returns the entries the archive files in dir hold by their
// names, in order.
func fileSpans(dir string) ([]span, error) {
	names, err := filepath.Glob(filepath.Join(dir, "qapi-log-*.p7m"))
	if err != nil {
		return nil, err
	}
	var have []span
	for _, n := range names {
		if f, l, ok := fileRange(n); ok {
			have = append(have, span{f, l})
		}
	}
	sort.Slice(have, func(i, j int) bool { return have[i].first < have[j].first })
	return have, nil
}

// checkFiles returns an error naming the first entries from first to last
// that none of the files of dir (have) holds: the server notices a deleted
// file before any reader does.
func checkFiles(dir string, have []span, first, last uint64) error {
	next := first
	for _, h := range have {
		if next > last || h.first > next {
			break
		}
		next = max(next, h.last+1)
	}
	if next > last {
		return nil
	}
	end := last
	for _, h := range have {
		if h.first > next {
			end = min(end, h.first-1)
			break
		}
	}
	return fmt.Errorf("archive: no file in %s holds entries %d to %d, which were archived "+
		"and not pruned: a file was deleted or moved; restore it from a backup and report "+
		"it", dir, next, end)
}

// parseHead reads a head without checking who signed it.
func parseHead(der []byte) (*Head, error) {
	signed, err := cms.Verify(der, nil)
	if err != nil {
		return nil, err
	}
	var h Head
	if err := json.Unmarshal(signed.Content, &h); err != nil {
		return nil, fmt.Errorf("the head's content does not parse: %w", err)
	}
	if h.Format != HeadFormat {
		return nil, fmt.Errorf("format %q, want %q", h.Format, HeadFormat)
	}
	return &h, nil
}

// ReadHead reads and checks an archive head: its CMS signature, and with
// roots (the certification centres of members' signing certificates) the
// signer's chain at the head's time and that the signer is the member the
// head names. It returns the head and its signer's certificate.
func ReadHead(path string, roots *x509.CertPool) (*Head, *x509.Certificate, error) {
	der, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	signed, err := cms.Verify(der, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	h, err := parseHead(der)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if roots == nil {
		return h, signed.Signer, nil
	}
	inter := x509.NewCertPool()
	for _, c := range signed.Certificates {
		inter.AddCert(c)
	}
	_, err = signed.Signer.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		CurrentTime: h.Time, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return nil, nil, fmt.Errorf("%s: the signer's certificate: %w", path, err)
	}
	member, server, err := ident.MemberFromCertSerial(signed.Signer.Subject.SerialNumber)
	if err != nil || server != "" || member.String() != h.Member {
		return nil, nil, fmt.Errorf("%s: signed by %q, not by the signing certificate of "+
			"member %s", path, signed.Signer.Subject.SerialNumber, h.Member)
	}
	return h, signed.Signer, nil
}
