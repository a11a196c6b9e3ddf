package main

import (
	"archive/tar"
	"bytes"
	"crypto/ecdsa"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"time"

	"github.com/qapi-az/qapi/appliance/archive"
)

// defaultJournal is where readings of archives are recorded on the
// appliance; QAPI_ACCESS_JOURNAL overrides it.
const defaultJournal = "/perm/qapi/archive-access.log"

func init() {
	register("archive", command{
		summary: "verify or export message log archives: qapi archive verify -key reader.pem FILE...",
		run:     runArchive,
	})
}

const archiveUsage = `usage:
  qapi archive verify -key reader.pem [-sign-roots ca.pem] [-tsa-roots tsa.pem]
      [-head qapi-log-head.p7s | -partial] FILE...
  qapi archive export -key reader.pem -out DIR FILE
  qapi archive journal [-journal FILE]

verify decrypts each archive with the reader's key and checks every entry's
hash and chain link, every message signature and every time stamp, and that
the files continue one chain from the log's first entry, or from where the
archive head says the kept archives start, to the head's last entry. The
head is the signed qapi-log-head.p7s next to the first file unless -head
names another. It prints each problem by file and entry and exits 1 when
there is any. -partial checks only the files given.

export verifies one file and writes its members (manifest.json, entries/,
timestamps/) under DIR.

Both record who read what, and when, in the access journal (-journal)
before opening any file, and refuse to read when it cannot be written.

journal checks that chain of the access journal, each line linked to the
one before by its hash, and names the first line that breaks it.`

func runArchive(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, archiveUsage)
		return 2
	}
	switch args[0] {
	case "verify", "export":
		return runArchiveRead(args[0], args[1:], os.Stdout, os.Stderr)
	case "journal":
		return runArchiveJournal(args[1:], os.Stdout, os.Stderr)
	default:
		fmt.Fprintln(os.Stderr, archiveUsage)
		return 2
	}
}

func runArchiveRead(action string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("qapi archive "+action, flag.ContinueOnError)
	fs.SetOutput(stderr)
	keyPath := fs.String("key", "", "the reader's private key `file` (PEM, ECDSA P-256)")
	signRoots := fs.String("sign-roots", "", "PEM `file` of the certification centres of "+
		"members' signing certificates; without it only CMS signatures are checked")
	tsaRoots := fs.String("tsa-roots", "", "PEM `file` of the trusted TSA certificate or its "+
		"CA; without it time stamps are checked but not who made them")
	requireStamps := fs.Bool("require-stamps", true, "report entries no time stamp covers")
	journal := fs.String("journal", envOr("QAPI_ACCESS_JOURNAL", defaultJournal),
		"access journal `file` that records this reading")
	who := fs.String("who", defaultWho(), "the `name` of the person reading, for the journal")
	out := fs.String("out", "", "export: the `directory` to write the members to")
	head := fs.String("head", "", "the archive head `file` to compare the files with "+
		"(default: "+archive.HeadName+" next to the first file, when there is one)")
	partial := fs.Bool("partial", false, "check only the files given, not that they "+
		"reach from the first archived entry to the last")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	files := fs.Args()
	if *keyPath == "" || len(files) == 0 || action == "export" && (*out == "" || len(files) != 1) {
		fmt.Fprintln(stderr, archiveUsage)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "qapi archive %s: %v\n", action, err)
		return 1
	}
	key, err := archive.LoadReaderKey(*keyPath)
	if err != nil {
		return fail(err)
	}
	opts := archive.VerifyOptions{Key: key, RequireStamps: *requireStamps, Partial: *partial}
	if *signRoots != "" {
		if opts.SignRoots, err = archive.LoadCertPool(*signRoots); err != nil {
			return fail(err)
		}
	}
	if *tsaRoots != "" {
		if opts.TSARoots, err = archive.LoadCertPool(*tsaRoots); err != nil {
			return fail(err)
		}
	}
	abs := make([]string, len(files))
	for i, f := range files {
		if abs[i], err = filepath.Abs(f); err != nil {
			return fail(err)
		}
	}
	if action == "verify" {
		opts.Head = *head
		if h := filepath.Join(filepath.Dir(abs[0]), archive.HeadName); opts.Head == "" &&
			!*partial && exists(h) {
			opts.Head = h
		}
		if opts.Head != "" {
			if opts.Head, err = filepath.Abs(opts.Head); err != nil {
				return fail(err)
			}
			abs = append(abs, opts.Head)
		}
	}

	// Clauses 3.8.4 and 6.8: the reading is recorded before any file is
	// opened.
	acc := archive.Access{Time: time.Now().UTC(), Who: *who, Key: archive.KeyFingerprint(key),
		Action: action, Files: abs, Outcome: "started"}
	if err := archive.RecordAccess(*journal, acc); err != nil {
		return fail(fmt.Errorf("%w; archives are read only when the reading can be "+
			"recorded: pass -journal with a writable file", err))
	}
	finish := func(outcome string) {
		acc.Time, acc.Outcome = time.Now().UTC(), outcome
		if err := archive.RecordAccess(*journal, acc); err != nil {
			fmt.Fprintf(stderr, "qapi archive %s: %v\n", action, err)
		}
	}

	if action == "export" {
		// One file is exported; what lies before or after it is not asked.
		opts.Partial = true
	}
	r := archive.Verify(files, opts)
	for _, f := range r.Files {
		fmt.Fprintf(stdout, "%s: entries %d-%d: %d messages, %d metadata only, %d links, "+
			"%d time stamps, %d unstamped\n", f.File, f.First, f.Last, f.Messages, f.Metadata,
			f.Links, f.Stamps, f.Unstamped)
	}
	if h := r.Head; h != nil {
		fmt.Fprintf(stdout, "%s: archive head of %s by %s: archives from entry %d to %d\n",
			opts.Head, h.Time.Format(time.RFC3339), h.Member, h.First, h.Last)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(stdout, "PROBLEM %s\n", p)
	}
	if !r.OK() {
		finish(fmt.Sprintf("%d problems", len(r.Problems)))
		fmt.Fprintf(stderr, "qapi archive %s: %d problems found; the archives are not "+
			"intact evidence\n", action, len(r.Problems))
		return 1
	}
	// Without roots a forger holding a reader's key could re-sign the
	// whole archive with keys of his own: say so rather than claim proof.
	limits := append(rootNotes(opts), r.Notes...)
	for _, n := range limits {
		fmt.Fprintf(stdout, "NOTE %s\n", n)
	}
	if action == "export" {
		if err := export(files[0], key, *out); err != nil {
			finish("export failed: " + err.Error())
			return fail(err)
		}
		fmt.Fprintf(stdout, "exported to %s\n", *out)
	} else if len(limits) == 0 {
		fmt.Fprintln(stdout, "OK: every entry, signature, time stamp and chain link verified")
	} else {
		fmt.Fprintln(stdout, "OK: every entry, signature, time stamp and chain link "+
			"verified, within the limits noted")
	}
	finish("ok")
	return 0
}

// runArchiveJournal checks the chain of the access journal.
func runArchiveJournal(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("qapi archive journal", flag.ContinueOnError)
	fs.SetOutput(stderr)
	journal := fs.String("journal", envOr("QAPI_ACCESS_JOURNAL", defaultJournal),
		"the access journal `file` to check")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintln(stderr, archiveUsage)
		return 2
	}
	n, err := archive.VerifyJournal(*journal)
	var je *archive.JournalError
	if errors.As(err, &je) {
		fmt.Fprintf(stdout, "PROBLEM %s\n", je)
		fmt.Fprintf(stderr, "qapi archive journal: the chain breaks at line %d after %d "+
			"intact lines; the journal was altered there or before: keep a copy as "+
			"evidence and report it as a security incident\n", je.Line, n)
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "qapi archive journal: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "OK: %s: %d lines, each linked to the one before\n", *journal, n)
	fmt.Fprintln(stdout, "NOTE lines cut from the end, or a journal rewritten whole, "+
		"cannot be told")
	return 0
}

// rootNotes says which checks verify could not make for lack of roots.
func rootNotes(opts archive.VerifyOptions) []string {
	var notes []string
	if opts.SignRoots == nil {
		notes = append(notes, "no -sign-roots: each message signature was checked "+
			"against the certificate it carries only, not against the certification "+
			"centre, nor its signer against the member")
	}
	if opts.TSARoots == nil {
		notes = append(notes, "no -tsa-roots: each time stamp was checked against its "+
			"own certificate only; a stamp by any TSA would pass")
	}
	return notes
}

// export writes the members of an archive's container under dir.
func export(file string, key *ecdsa.PrivateKey, dir string) error {
	_, plain, err := archive.Open(file, key)
	if err != nil {
		return err
	}
	tr := tar.NewReader(bytes.NewReader(plain))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		// archive.Open has refused anything but plain relative names.
		name := filepath.Join(dir, filepath.FromSlash(h.Name))
		if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
			return err
		}
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// defaultWho names the person running the command: the user who ran sudo,
// or the current user.
func defaultWho() string {
	if u := os.Getenv("SUDO_USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "unknown"
}
