package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/archive"
	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/messagelog"
	"github.com/qapi-az/qapi/appliance/sign"
	"github.com/qapi-az/qapi/internal/testpki"
)

// makeArchive logs three signed requests, archives them without time
// stamps in two files (1-2 and 3) with an archive head, and returns the
// files, the reader's key file and the signing CA file.
func makeArchive(t *testing.T, dir string) (files []string, keyPath, caPath string) {
	t.Helper()
	ca, err := testpki.NewCA("qapi archive test")
	if err != nil {
		t.Fatal(err)
	}
	member := ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1111111"}
	sc, err := ca.IssueSigning(member)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := ca.IssueTLS("archive reader")
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	l, err := messagelog.Open(messagelog.Options{Path: filepath.Join(dir, "log.db"), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s := &sign.Signer{Key: sc.Key, Cert: sc.Cert}
	a := &archive.Archiver{Log: l, Dir: dir, Readers: []*x509.Certificate{rc.Cert},
		Head: &archive.HeadSigner{Key: sc.Key, Chain: []*x509.Certificate{sc.Cert}}}
	for i := range 3 {
		body, ct, err := s.Sign([]byte("<Envelope>"+strings.Repeat("x", i)+"</Envelope>"),
			time.Now())
		if err != nil {
			t.Fatal(err)
		}
		err = l.Append(context.Background(), messagelog.Record{Kind: messagelog.KindRequest,
			MessageID: "m", Client: member.String(), Service: "AZ/GOV/2222222/reg/get",
			Signed: body, ContentType: ct})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			continue
		}
		more, err := a.Run(context.Background(), time.Now().Add(time.Minute))
		if err != nil || len(more) != 1 {
			t.Fatalf("archiving: %v %v", more, err)
		}
		files = append(files, more...)
	}
	k, _ := x509.MarshalPKCS8PrivateKey(rc.Key)
	keyPath = filepath.Join(dir, "reader.pem")
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k}), 0o600)
	caPath = filepath.Join(dir, "ca.pem")
	os.WriteFile(caPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE",
		Bytes: ca.Cert.Raw}), 0o600)
	return files, keyPath, caPath
}

// TestArchiveCommand: verify accepts an intact archive and names a damaged
// one; every reading is in the journal; no journal, no reading; export
// writes the members.
func TestArchiveCommand(t *testing.T) {
	dir := t.TempDir()
	files, keyPath, caPath := makeArchive(t, dir)
	file := files[0]
	journal := filepath.Join(dir, "access.log")
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := runArchiveRead(args[0], args[1:], &out, &errb)
		return code, out.String() + errb.String()
	}
	base := []string{"-key", keyPath, "-journal", journal, "-who", "auditor-1",
		"-require-stamps=false"}

	code, out := run(append(append([]string{"verify"}, base...), "-sign-roots", caPath,
		files[0], files[1])...)
	if code != 0 || !strings.Contains(out, "2 messages") ||
		!strings.Contains(out, "archives from entry 1 to 3") {
		t.Fatalf("verify = %d:\n%s", code, out)
	}
	// What was not checked for lack of roots is said, not passed over.
	if !strings.Contains(out, "NOTE no -tsa-roots") || strings.Contains(out, "-sign-roots:") ||
		!strings.Contains(out, "within the limits noted") {
		t.Fatalf("verify without -tsa-roots does not say what it left unchecked:\n%s", out)
	}
	exp := filepath.Join(dir, "exported")
	code, out = run(append(append([]string{"export"}, base...), "-out", exp, file)...)
	if code != 0 {
		t.Fatalf("export = %d:\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(exp, "entries", "00000000000000000002.mime")); err != nil {
		t.Fatalf("export wrote no message: %v", err)
	}

	// The head, found next to the files, says entries 1 to 3 are archived:
	// without the newest file, entry 3 is missing.
	code, out = run(append(append([]string{"verify"}, base...), file)...)
	if code != 1 || !strings.Contains(out, "PROBLEM "+filepath.Join(dir, archive.HeadName)) ||
		!strings.Contains(out, "entries 3 to 3 are missing") {
		t.Fatalf("verify without the newest file = %d:\n%s", code, out)
	}

	b, _ := os.ReadFile(file)
	b[len(b)-20] ^= 1
	os.WriteFile(file, b, 0o600)
	code, out = run(append(append([]string{"verify"}, base...), file)...)
	if code != 1 || !strings.Contains(out, "PROBLEM "+file) {
		t.Fatalf("verify of a damaged file = %d:\n%s", code, out)
	}

	lines := strings.Split(strings.TrimSpace(readFile(t, journal)), "\n")
	if len(lines) != 8 {
		t.Fatalf("journal has %d lines, want 8 (start and end of four readings)", len(lines))
	}
	var last archive.Access
	if err := json.Unmarshal([]byte(lines[7]), &last); err != nil {
		t.Fatal(err)
	}
	if last.Who != "auditor-1" || last.Action != "verify" || !strings.HasPrefix(last.Key,
		"sha256:") || len(last.Files) != 2 || !strings.Contains(last.Outcome, "problem") {
		t.Fatalf("journal line %+v", last)
	}

	// The journal's chain holds; an edited line breaks the link after it.
	var jout, jerr bytes.Buffer
	if code := runArchiveJournal([]string{"-journal", journal}, &jout, &jerr); code != 0 ||
		!strings.Contains(jout.String(), "OK: "+journal+": 8 lines") {
		t.Fatalf("journal = %d:\n%s%s", code, jout.String(), jerr.String())
	}
	lines[3] = strings.Replace(lines[3], "auditor-1", "auditor-2", 1)
	os.WriteFile(journal, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
	jout.Reset()
	if code := runArchiveJournal([]string{"-journal", journal}, &jout, &jerr); code != 1 ||
		!strings.Contains(jout.String(), "PROBLEM "+journal+": line 5:") {
		t.Fatalf("journal with line 4 edited = %d:\n%s", code, jout.String())
	}

	code, out = run("verify", "-key", keyPath, "-journal", filepath.Join(dir, "no", "such"),
		file)
	if code != 1 || !strings.Contains(out, "-journal") {
		t.Fatalf("verify without a writable journal = %d:\n%s", code, out)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
