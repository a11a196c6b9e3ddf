// Package archive moves message log entries out of the live store into
// archive files that only the persons named to read logs can open, and
// verifies such files (clauses 2.2.2, 3.8.4, 6.3).
//
// # The file
//
// An archive file is a CMS EnvelopedData (RFC 5652), DER, encrypted with
// AES-256-CBC under a fresh content key that is wrapped for each reader by
// ECDH P-256 key agreement (RFC 5753). `openssl cms -decrypt -inform DER
// -recip reader.pem -inkey reader-key.pem` opens it. Its plaintext is a tar
// (docs/messagelog.md describes each member):
//
//	manifest.json                  entries First..Last, the chain's ends, the stamps
//	entries/<seq>.json             one entry's metadata and chain links
//	entries/<seq>.mime             the signed message as exchanged, as a MIME entity
//	timestamps/<seq>.tst           an RFC 3161 token over the hash of entry <seq>
//
// The hash chain of the message log runs through the files: each manifest
// records the hash of the entry before its first, which is the last hash of
// the file before it. The archive head (Head, qapi-log-head.p7s), signed by
// the security server, records where the kept files start and end, so that
// a missing oldest or newest file is found too.
//
// # Procedure
//
// Archiver.Run writes the files for one period. Entries leave the live
// store only after their file is written, synced, read back, decrypted and
// verified. Policy fixes what is kept of which service and how long files
// are kept (3.8.4). Verify is what a reader runs; `qapi archive verify`
// wraps it. RecordAccess keeps the hash-chained journal of who read what,
// and VerifyJournal checks its chain.
package archive

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/qapi-az/qapi/appliance/messagelog"
)

// Policy is the archiving procedure of clause 3.8.4: which data is archived
// and for how long.
type Policy struct {
	// Default is the level for services that Services does not name
	// (LevelFull when empty).
	Default Level
	// Services maps a service, a provider or a member (the leading parts of
	// ident.Service.String(), such as "AZ/GOV/1234567" or
	// "AZ/GOV/1234567/reg/getPerson") to a level; the longest match wins.
	Services map[string]Level
	// Retention is how long archive files are kept; Prune deletes older
	// ones. Zero keeps them forever.
	Retention time.Duration
}

// LevelFor returns the level at which entries of service are archived.
func (p Policy) LevelFor(service string) Level {
	best, level := -1, p.Default
	for prefix, l := range p.Services {
		if (service == prefix || strings.HasPrefix(service, prefix+"/")) && len(prefix) > best {
			best, level = len(prefix), l
		}
	}
	if level == "" {
		return LevelFull
	}
	return level
}

// Archiver moves entries of a message log into archive files.
type Archiver struct {
	Log *messagelog.Log
	// Dir receives the files, named qapi-log-<first>-<last>.p7m.
	Dir string
	// Readers are the certificates (ECDSA P-256) of the persons who may
	// read the archives (3.8.4); every file is encrypted to all of them.
	Readers []*x509.Certificate
	Policy  Policy
	// MaxEntries bounds the entries of one file (default 2000); a file
	// ends at a time stamp's last entry, so it may hold more when one stamp
	// covers more.
	MaxEntries int
	// RequireStamps archives only entries a time stamp covers, so that
	// every archived entry carries proof of its time. Set it when the log
	// has a Stamper.
	RequireStamps bool
	// TSARoots check the tokens when a written file is read back; nil
	// checks their signatures but not who made them.
	TSARoots *x509.CertPool
	// Head, when set, signs the archive head (HeadName in Dir) that Run
	// and Every rewrite after each round, so that a reader can tell a
	// missing oldest or newest file.
	Head *HeadSigner
	// Now returns the current time; time.Now when nil.
	Now func() time.Time
}

// Run archives the entries logged before the given time (with
// RequireStamps: those covered by a stamp taken before it) and returns the
// files written. It stops at the first error; entries of files not yet
// verified stay in the live store, and a later Run picks them up again.
// With Head set it then rewrites the archive head, even when it wrote no
// file, so that the head's time says how fresh it is.
func (a *Archiver) Run(ctx context.Context, before time.Time) ([]string, error) {
	files, err := a.run(ctx, before)
	if herr := a.writeHead(nil); herr != nil {
		err = errors.Join(err, herr)
	}
	return files, err
}

func (a *Archiver) run(ctx context.Context, before time.Time) ([]string, error) {
	if len(a.Readers) == 0 {
		return nil, errors.New("archive: no readers: name the persons who may read the " +
			"message log archives (clause 3.8.4)")
	}
	st := a.Log.State()
	from := st.Archived + 1
	if from > st.Head {
		return nil, nil
	}
	stamps, err := a.Log.Stamps(from, 0)
	if err != nil {
		return nil, fmt.Errorf("archive: reading time stamps: %w", err)
	}
	through, err := a.through(stamps, from, st.Head, before)
	if err != nil {
		return nil, err
	}
	var files []string
	prev := st.ArchivedHash
	for from <= through {
		if err := ctx.Err(); err != nil {
			return files, err
		}
		end := a.chunkEnd(stamps, from, through)
		name, last, err := a.writeFile(from, end, prev, stamps)
		if err != nil {
			return files, err
		}
		if err := a.Log.Remove(end, last); err != nil {
			return files, fmt.Errorf("archive: %s is written and verified, but removing "+
				"its entries from the live store failed: %w", name, err)
		}
		files = append(files, name)
		from, prev = end+1, last
	}
	return files, nil
}

// through returns the last entry to archive.
func (a *Archiver) through(stamps []messagelog.Stamp, from, head uint64,
	before time.Time) (uint64, error) {
	if a.RequireStamps {
		var t uint64
		for _, s := range stamps {
			if s.Time.Before(before) && s.Last > t {
				t = s.Last
			}
		}
		return t, nil
	}
	t := from - 1
	stop := errors.New("stop")
	err := a.Log.Entries(from, head, func(e *messagelog.Entry) error {
		if !e.Time.Before(before) {
			return stop
		}
		t = e.Seq
		return nil
	})
	if err != nil && err != stop {
		return 0, fmt.Errorf("archive: reading the live store: %w", err)
	}
	return t, nil
}

// chunkEnd returns the last entry of the file starting at from: at least
// MaxEntries entries, ending where a stamp ends when one does.
func (a *Archiver) chunkEnd(stamps []messagelog.Stamp, from, through uint64) uint64 {
	max := uint64(a.MaxEntries)
	if max == 0 {
		max = 2000
	}
	want := from + max - 1
	for _, s := range stamps {
		if s.Last >= want && s.Last <= through {
			return s.Last
		}
	}
	if a.RequireStamps || want > through {
		return through
	}
	return want
}

// writeFile writes, syncs, re-reads and verifies the file of entries
// from..to, and returns its path and the hash of entry to.
//
// TODO: stream the container and its encryption; a file is built in memory,
// about four times its size at the peak (20 MB entries make 80 MB).
func (a *Archiver) writeFile(from, to uint64, prev messagelog.Hash,
	stamps []messagelog.Stamp) (string, messagelog.Hash, error) {
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	c := newContainer(now())
	m := Manifest{Format: Format, Created: now().UTC(), First: from, Last: to,
		Prev: hex.EncodeToString(prev[:])}
	for _, s := range stamps {
		if s.Last < from || s.Last > to {
			continue
		}
		m.Stamps = append(m.Stamps, StampMeta{First: s.First, Last: s.Last,
			Head: hex.EncodeToString(s.Head), Time: s.Time.UTC(),
			File: fmt.Sprintf("timestamps/%020d.tst", s.Last)})
	}
	var metas []EntryMeta
	var bodies [][]byte
	last := prev
	var lastTime time.Time
	err := a.Log.Entries(from, to, func(e *messagelog.Entry) error {
		h := e.Hash()
		meta := EntryMeta{Seq: e.Seq, Level: a.Policy.LevelFor(e.Service),
			Prev: hex.EncodeToString(e.Prev[:]), Hash: hex.EncodeToString(h[:])}
		var body []byte
		if meta.Level != LevelLink {
			meta.Time, meta.Kind, meta.MessageID = e.Time.UTC(), e.Kind, e.MessageID
			meta.Client, meta.Service, meta.ContentType = e.Client, e.Service, e.ContentType
			meta.SignedSHA256 = hex.EncodeToString(e.SignedSHA256[:])
		}
		if meta.Level == LevelFull {
			meta.Message = entryName(e.Seq, "mime")
			body = mimeEntity(e.ContentType, e.Signed)
		}
		metas = append(metas, meta)
		bodies = append(bodies, body)
		last, lastTime = h, e.Time
		return nil
	})
	if err != nil {
		return "", last, fmt.Errorf("archive: reading entries %d to %d: %w", from, to, err)
	}
	if len(metas) != int(to-from+1) {
		return "", last, fmt.Errorf("archive: the live store holds %d of entries %d to %d",
			len(metas), from, to)
	}
	m.LastHash = hex.EncodeToString(last[:])

	if err := c.addJSON("manifest.json", m); err != nil {
		return "", last, err
	}
	for i, meta := range metas {
		if err := c.addJSON(entryName(meta.Seq, "json"), meta); err != nil {
			return "", last, err
		}
		if bodies[i] != nil {
			if err := c.add(meta.Message, bodies[i]); err != nil {
				return "", last, err
			}
		}
	}
	for _, s := range stamps {
		if s.Last >= from && s.Last <= to {
			if err := c.add(fmt.Sprintf("timestamps/%020d.tst", s.Last), s.Token); err != nil {
				return "", last, err
			}
		}
	}
	plain, err := c.bytes()
	if err != nil {
		return "", last, fmt.Errorf("archive: building the container: %w", err)
	}
	der, cek, err := encrypt(plain, a.Readers)
	if err != nil {
		return "", last, fmt.Errorf("archive: encrypting: %w", err)
	}

	name := filepath.Join(a.Dir, fmt.Sprintf("qapi-log-%020d-%020d.p7m", from, to))
	if err := writeSynced(name, der); err != nil {
		return "", last, err
	}
	if !lastTime.IsZero() {
		// Prune goes by the time of the newest entry a file holds.
		os.Chtimes(name, lastTime, lastTime)
	}

	// Read back what the disk holds and check it as a reader would, with
	// the content key instead of a reader's key.
	back, err := os.ReadFile(name)
	if err != nil {
		return "", last, fmt.Errorf("archive: reading back %s: %w", name, err)
	}
	if sha256.Sum256(back) != sha256.Sum256(der) {
		return "", last, fmt.Errorf("archive: %s reads back different from what was written",
			name)
	}
	backPlain, err := decryptWithKey(back, cek)
	if err != nil {
		return "", last, fmt.Errorf("archive: decrypting %s after writing: %w", name, err)
	}
	contents, err := parseContainer(backPlain)
	if err != nil {
		return "", last, fmt.Errorf("archive: %s after writing: %w", name, err)
	}
	probs := checkContents(name, contents, checkOptions{tsaRoots: a.TSARoots,
		skipSignatures: true, wantPrev: &prev})
	if len(probs) > 0 {
		return "", last, fmt.Errorf("archive: %s does not verify after writing: %s", name,
			probs[0])
	}
	return name, last, nil
}

// writeSynced writes data to name through a temporary file, syncs it,
// renames it into place and syncs the directory.
func writeSynced(name string, data []byte) error {
	tmp := name + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("archive: writing %s: %w", name, err)
	}
	d, err := os.Open(filepath.Dir(name))
	if err != nil {
		return fmt.Errorf("archive: syncing the directory of %s: %w", name, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("archive: syncing the directory of %s: %w", name, err)
	}
	return nil
}

// Prune deletes the archive files in dir whose newest entry is older than
// retention (3.8.4: how long archives are kept) and returns their paths.
// A zero retention deletes nothing.
func Prune(dir string, retention time.Duration, now time.Time) ([]string, error) {
	if retention <= 0 {
		return nil, nil
	}
	names, err := filepath.Glob(filepath.Join(dir, "qapi-log-*.p7m"))
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, n := range names {
		fi, err := os.Stat(n)
		if err != nil {
			return removed, err
		}
		if now.Sub(fi.ModTime()) > retention {
			if err := os.Remove(n); err != nil {
				return removed, fmt.Errorf("archive: pruning %s: %w", n, err)
			}
			removed = append(removed, n)
		}
	}
	return removed, nil
}

// Every archives by period until ctx ends: at the start of each period it
// runs Run for the entries before that start (now truncated to period, so
// a daily period archives the day before), then Prune with
// Policy.Retention, and rewrites the archive head past the files pruned.
// report receives each round's files written, files
// pruned and error; the caller logs them. A failed round is retried at the
// next tick.
func (a *Archiver) Every(ctx context.Context, period time.Duration,
	report func(written, pruned []string, err error)) {
	t := time.NewTicker(period)
	defer t.Stop()
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := now().Truncate(period)
		written, err := a.Run(ctx, start)
		var pruned []string
		if err == nil {
			pruned, err = Prune(a.Dir, a.Policy.Retention, now())
			if len(pruned) > 0 {
				err = errors.Join(err, a.writeHead(pruned))
			}
		}
		report(written, pruned, err)
	}
}
