package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/cms"
	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/messagelog"
	"github.com/qapi-az/qapi/appliance/sign"
	"github.com/qapi-az/qapi/appliance/timestamp"
	"github.com/qapi-az/qapi/internal/testenv"
	"github.com/qapi-az/qapi/internal/testpki"
)

// localTSA stamps in process with timestamp.Issue.
type localTSA struct {
	ca     *testpki.CA
	key    *ecdsa.PrivateKey
	cert   *x509.Certificate
	roots  *x509.CertPool
	serial atomic.Int64
}

func newLocalTSA(t testing.TB) *localTSA {
	t.Helper()
	ca, err := testpki.NewCA("archive test TSA CA")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	eku, _ := asn1.Marshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 8}})
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "archive test TSA"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtraExtensions: []pkix.Extension{
			{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Critical: true, Value: eku}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return &localTSA{ca: ca, key: key, cert: cert, roots: roots}
}

func (s *localTSA) Stamp(ctx context.Context, digest []byte) ([]byte, error) {
	req, nonce, err := timestamp.NewRequest(digest)
	if err != nil {
		return nil, err
	}
	resp, err := timestamp.Issue(req, s.key, s.cert, time.Now(), big.NewInt(s.serial.Add(1)))
	if err != nil {
		return nil, err
	}
	tok, err := timestamp.VerifyResponse(resp, digest, nonce, s.roots)
	if err != nil {
		return nil, err
	}
	return tok.DER, nil
}

// world is a message log with signed traffic between two members, a TSA
// and readers.
type world struct {
	log     *messagelog.Log
	tsa     *localTSA
	signCA  *testpki.CA
	client  ident.Client
	service ident.Service
	cSigner *sign.Signer
	pSigner *sign.Signer
	readers []reader
	dir     string
	n       int
}

func newWorld(t testing.TB) *world {
	t.Helper()
	w := &world{tsa: newLocalTSA(t), readers: newReaders(t, 2), dir: t.TempDir()}
	var err error
	if w.signCA, err = testpki.NewCA("archive test CA"); err != nil {
		t.Fatal(err)
	}
	w.client = ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1111111",
		SubsystemCode: "portal"}
	w.service = ident.Service{Client: ident.Client{Instance: "AZ", MemberClass: "GOV",
		MemberCode: "2222222", SubsystemCode: "reg"}, ServiceCode: "getPerson", Version: "v1"}
	for _, m := range []struct {
		c  ident.Client
		to **sign.Signer
	}{{w.client, &w.cSigner}, {w.service.Client, &w.pSigner}} {
		cert, err := w.signCA.IssueSigning(m.c)
		if err != nil {
			t.Fatal(err)
		}
		*m.to = &sign.Signer{Key: cert.Key, Cert: cert.Cert}
	}
	key := make([]byte, 32)
	rand.Read(key)
	w.log, err = messagelog.Open(messagelog.Options{Path: filepath.Join(w.dir, "log.db"),
		Key: key, Stamper: w.tsa, StampInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.log.Close() })
	return w
}

// exchange logs one request and its response, signed by each side.
func (w *world) exchange(t testing.TB) {
	t.Helper()
	w.n++
	id := fmt.Sprintf("msg-%d", w.n)
	now := time.Now()
	var recs []messagelog.Record
	for _, m := range []struct {
		kind messagelog.Kind
		s    *sign.Signer
	}{{messagelog.KindRequest, w.cSigner}, {messagelog.KindResponse, w.pSigner}} {
		soap := fmt.Sprintf("<Envelope><Body><getPerson>%s %s</getPerson></Body></Envelope>",
			m.kind, id)
		body, ct, err := m.s.Sign([]byte(soap), now)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, messagelog.Record{Kind: m.kind, MessageID: id,
			Client: w.client.String(), Service: w.service.String(), Time: now,
			Signed: body, ContentType: ct})
	}
	if err := w.log.Append(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
}

func (w *world) stamp(t testing.TB) {
	t.Helper()
	if err := w.log.StampNow(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func (w *world) archiver(max int) *Archiver {
	return &Archiver{Log: w.log, Dir: w.dir, Readers: certs(w.readers), MaxEntries: max,
		RequireStamps: true, TSARoots: w.tsa.roots}
}

func (w *world) verifyOptions(i int) VerifyOptions {
	roots := x509.NewCertPool()
	roots.AddCert(w.signCA.Cert)
	return VerifyOptions{Key: w.readers[i].key, SignRoots: roots, TSARoots: w.tsa.roots,
		RequireStamps: true}
}

// TestArchiveMovesAndVerifies: archived entries leave the live store, the
// files verify for every reader with full checks and without roots, and
// the chain continues across files and across runs.
func TestArchiveMovesAndVerifies(t *testing.T) {
	w := newWorld(t)
	for range 3 {
		w.exchange(t)
	}
	w.stamp(t) // covers 1-6
	for range 2 {
		w.exchange(t)
	}
	w.stamp(t)    // covers 7-10
	w.exchange(t) // 11-12: unstamped, stays

	files, err := w.archiver(4).Run(context.Background(), time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 {
		t.Fatalf("files %v, want two (1-6 and 7-10)", files)
	}
	st := w.log.State()
	if st.Archived != 10 || st.Head != 12 {
		t.Fatalf("state %+v, want archived 10, head 12", st)
	}
	if n, err := w.log.Verify(); err != nil || n != 2 {
		t.Fatalf("live store after archiving: %d entries, %v; want 2", n, err)
	}

	w.stamp(t)
	more, err := w.archiver(4).Run(context.Background(), time.Now().Add(time.Minute))
	if err != nil || len(more) != 1 {
		t.Fatalf("second run: %v, %v", more, err)
	}
	all := append(files, more...)
	for i := range w.readers {
		r := Verify(all, w.verifyOptions(i))
		if !r.OK() {
			t.Fatalf("reader %d: %v", i, r.Problems)
		}
		var msgs, stamps int
		for _, f := range r.Files {
			msgs += f.Messages
			stamps += f.Stamps
		}
		if msgs != 12 || stamps != 3 {
			t.Fatalf("checked %d messages and %d stamps, want 12 and 3", msgs, stamps)
		}
	}
	r := Verify(all, VerifyOptions{Key: w.readers[0].key})
	if !r.OK() {
		t.Fatalf("without roots: %v", r.Problems)
	}

	stranger := newReaders(t, 1)[0]
	r = Verify(all[:1], VerifyOptions{Key: stranger.key})
	if r.OK() || r.Problems[0].File != all[0] {
		t.Fatalf("a stranger's key: %v", r.Problems)
	}
}

// TestArchivePolicy: levels per service; metadata-only and link-only
// entries still verify the chain.
func TestArchivePolicy(t *testing.T) {
	w := newWorld(t)
	for range 2 {
		w.exchange(t)
	}
	w.stamp(t)
	a := w.archiver(0)
	a.Policy = Policy{Default: LevelLink, Services: map[string]Level{
		"AZ/GOV/2222222":                      LevelMetadata,
		"AZ/GOV/2222222/reg/getPerson":        LevelFull,
		"AZ/GOV/2222222/reg/getPersonHistory": LevelLink,
	}}
	if got := a.Policy.LevelFor("AZ/GOV/3333333/x/y"); got != LevelLink {
		t.Fatalf("default level %q", got)
	}
	if got := a.Policy.LevelFor("AZ/GOV/2222222/reg/getAddress"); got != LevelMetadata {
		t.Fatalf("member level %q", got)
	}
	if got := a.Policy.LevelFor(w.service.String()); got != LevelFull {
		t.Fatalf("service level %q", got)
	}
	a.Policy.Services["AZ/GOV/2222222/reg/getPerson"] = LevelMetadata
	files, err := a.Run(context.Background(), time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	r := Verify(files, w.verifyOptions(0))
	if !r.OK() || r.Files[0].Metadata != 4 || r.Files[0].Messages != 0 {
		t.Fatalf("report %+v %v", r.Files, r.Problems)
	}
	c, _, err := Open(files[0], w.readers[0].key)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range c.Entries {
		if e.Signed != nil {
			t.Fatalf("entry %d kept its message at the metadata level", e.Seq)
		}
	}
}

// rewrite decrypts path with the reader's key, lets change alter the tar
// members, and encrypts the result again to the same readers: a forger who
// can read the archive.
func rewrite(t testing.TB, w *world, path string, change func(map[string][]byte)) {
	t.Helper()
	_, plain, err := Open(path, w.readers[0].key)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(plain))
	files := map[string][]byte{}
	var order []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
		order = append(order, h.Name)
	}
	change(files)
	c := newContainer(time.Now())
	for _, n := range order {
		if b, ok := files[n]; ok {
			c.add(n, b)
		}
	}
	out, _ := c.bytes()
	der, _, err := encrypt(out, certs(w.readers))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, der, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyReportsCorruption: each kind of damage is reported by file
// and, where it lies in one, by entry.
func TestVerifyReportsCorruption(t *testing.T) {
	tests := []struct {
		name    string
		damage  func(t *testing.T, w *world, files []string) []string
		file    int // index of the file named
		seq     uint64
		contain string
	}{
		{"flipped ciphertext byte", func(t *testing.T, w *world, fs []string) []string {
			b, _ := os.ReadFile(fs[1])
			b[len(b)-20] ^= 0x40
			os.WriteFile(fs[1], b, 0o600)
			return fs
		}, 1, 0, "cannot be read"},
		{"truncated file", func(t *testing.T, w *world, fs []string) []string {
			b, _ := os.ReadFile(fs[0])
			os.WriteFile(fs[0], b[:len(b)/2], 0o600)
			return fs
		}, 0, 0, "cannot be read"},
		{"altered message", func(t *testing.T, w *world, fs []string) []string {
			rewrite(t, w, fs[1], func(m map[string][]byte) {
				n := entryName(6, "mime")
				m[n] = bytes.Replace(m[n], []byte("smime.p7s"), []byte("smime.p7x"), 1)
			})
			return fs
		}, 1, 6, "digest"},
		{"altered metadata", func(t *testing.T, w *world, fs []string) []string {
			rewrite(t, w, fs[0], func(m map[string][]byte) {
				n := entryName(3, "json")
				m[n] = bytes.Replace(m[n], []byte("msg-2"), []byte("msg-9"), 1)
			})
			return fs
		}, 0, 3, "recorded hash"},
		{"removed entry", func(t *testing.T, w *world, fs []string) []string {
			rewrite(t, w, fs[0], func(m map[string][]byte) {
				delete(m, entryName(2, "json"))
			})
			return fs
		}, 0, 2, "missing"},
		{"damaged time stamp", func(t *testing.T, w *world, fs []string) []string {
			rewrite(t, w, fs[0], func(m map[string][]byte) {
				for n := range m {
					if strings.HasPrefix(n, "timestamps/") {
						m[n] = m[n][:len(m[n])-1]
					}
				}
			})
			return fs
		}, 0, 4, "time stamp"},
		{"missing middle file", func(t *testing.T, w *world, fs []string) []string {
			return []string{fs[0], fs[2]}
		}, 2, 0, "missing between"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			for i := 0; i < 6; i++ {
				w.exchange(t)
				if i%2 == 1 {
					w.stamp(t) // files of four entries: 1-4, 5-8, 9-12
				}
			}
			files, err := w.archiver(4).Run(context.Background(), time.Now().Add(time.Minute))
			if err != nil || len(files) != 3 {
				t.Fatalf("Run: %v, %v", files, err)
			}
			if r := Verify(files, w.verifyOptions(0)); !r.OK() {
				t.Fatalf("before damage: %v", r.Problems)
			}
			damaged := tt.damage(t, w, files)
			r := Verify(damaged, w.verifyOptions(0))
			for _, p := range r.Problems {
				if p.File == files[tt.file] && p.Seq == tt.seq &&
					strings.Contains(p.What, tt.contain) {
					return
				}
			}
			t.Fatalf("no problem for %s entry %d containing %q; got %v", files[tt.file],
				tt.seq, tt.contain, r.Problems)
		})
	}
}

// TestEvidenceWithOpenSSL: a stranger with only openssl and tar checks the
// same evidence: decrypts the file, verifies each message's signature and
// each time stamp over the chain.
func TestEvidenceWithOpenSSL(t *testing.T) {
	openssl := testenv.NeedCommand(t, "openssl")
	tarCmd := testenv.NeedCommand(t, "tar")
	w := newWorld(t)
	w.exchange(t)
	w.stamp(t) // over entry 2
	w.exchange(t)
	w.stamp(t) // over entry 4
	files, err := w.archiver(0).Run(context.Background(), time.Now().Add(time.Minute))
	if err != nil || len(files) != 1 {
		t.Fatalf("Run: %v, %v", files, err)
	}
	dir := t.TempDir()
	certPath, keyPath := writeReader(t, dir, w.readers[1])
	signCA := filepath.Join(dir, "sign-ca.pem")
	writePEM(t, signCA, "CERTIFICATE", w.signCA.Cert.Raw)
	tsaCA := filepath.Join(dir, "tsa-ca.pem")
	writePEM(t, tsaCA, "CERTIFICATE", w.tsa.ca.Cert.Raw)

	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	plain := filepath.Join(dir, "archive.tar")
	run(openssl, "cms", "-decrypt", "-inform", "DER", "-in", files[0], "-recip", certPath,
		"-inkey", keyPath, "-binary", "-out", plain)
	x := filepath.Join(dir, "x")
	os.Mkdir(x, 0o700)
	run(tarCmd, "-xf", plain, "-C", x)

	mimes, _ := filepath.Glob(filepath.Join(x, "entries", "*.mime"))
	if len(mimes) != 4 {
		t.Fatalf("%d messages in the archive, want 4", len(mimes))
	}
	for _, m := range mimes {
		run(openssl, "cms", "-verify", "-in", m, "-CAfile", signCA, "-purpose", "any",
			"-out", os.DevNull)
	}
	c, _, err := Open(files[0], w.readers[1].key)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Manifest.Stamps) != 2 {
		t.Fatalf("%d stamps in the archive, want 2", len(c.Manifest.Stamps))
	}
	for _, s := range c.Manifest.Stamps {
		// The digest a stranger gives openssl is the stamped entry's hash
		// from its json, which the python below recomputes, not the
		// manifest's word for it.
		var e struct {
			Hash string `json:"hash"`
		}
		b, err := os.ReadFile(filepath.Join(x, entryName(s.Last, "json")))
		if err == nil {
			err = json.Unmarshal(b, &e)
		}
		if err != nil {
			t.Fatal(err)
		}
		out := run(openssl, "ts", "-verify", "-digest", e.Hash, "-in",
			filepath.Join(x, s.File), "-token_in", "-CAfile", tsaCA)
		if !strings.Contains(out, "Verification: OK") {
			t.Fatalf("openssl ts -verify: %s", out)
		}
	}
	// The stamped head is the hash of the last entry, recomputable from
	// the tar alone: the manifest's lastHash equals the last stamp's head.
	if last := c.Manifest.Stamps[len(c.Manifest.Stamps)-1]; last.Head != c.Manifest.LastHash {
		t.Fatalf("stamp head %s, last hash %s", last.Head, c.Manifest.LastHash)
	}
	if _, err := hex.DecodeString(c.Manifest.LastHash); err != nil {
		t.Fatal(err)
	}
	// And a stranger recomputes the chain from docs/messagelog.md alone.
	python := testenv.NeedCommand(t, "python3")
	script := filepath.Join(dir, "chain.py")
	os.WriteFile(script, []byte(chainPy), 0o600)
	out := run(python, script, x)
	if strings.TrimSpace(out) != c.Manifest.LastHash {
		t.Fatalf("python recomputed the chain to %q, want %s", out, c.Manifest.LastHash)
	}
}

// chainPy recomputes every entry's hash by the canonical encoding of
// docs/messagelog.md, checks each link and body digest, and prints the
// last hash.
const chainPy = `import glob, hashlib, json, os, struct, sys
from datetime import datetime
d = sys.argv[1]
m = json.load(open(os.path.join(d, "manifest.json")))
prev = m["prev"]
def field(b): return struct.pack(">I", len(b)) + b
for seq in range(m["first"], m["last"] + 1):
    e = json.load(open(os.path.join(d, "entries", "%020d.json" % seq)))
    assert e["prev"] == prev, "entry %d: broken link" % seq
    body = open(os.path.join(d, e["message"]), "rb").read()
    head = ("Content-Type: " + e["contentType"] + "\r\n\r\n").encode()
    assert body.startswith(head)
    digest = hashlib.sha256(body[len(head):]).digest()
    assert digest.hex() == e["signedSha256"], "entry %d: body" % seq
    t = e["time"].replace("Z", "")
    whole, _, frac = t.partition(".")
    secs = int(datetime.fromisoformat(whole + "+00:00").timestamp())
    ns = secs * 10**9 + int((frac + "000000000")[:9])
    c = b"QAPI-MESSAGELOG-1" + field(struct.pack(">Q", seq)) + field(bytes.fromhex(prev))
    c += field(struct.pack(">q", ns))
    for k in ("kind", "messageId", "client", "service", "contentType"):
        c += field(e[k].encode())
    c += field(digest)
    h = hashlib.sha256(c).hexdigest()
    assert h == e["hash"], "entry %d: hash" % seq
    prev = h
assert prev == m["lastHash"]
print(prev)
`

func TestPrune(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for i, age := range []time.Duration{time.Hour, 48 * time.Hour, 100 * 24 * time.Hour} {
		p := filepath.Join(dir, fmt.Sprintf("qapi-log-%020d-%020d.p7m", i+1, i+1))
		os.WriteFile(p, []byte("x"), 0o600)
		os.Chtimes(p, now.Add(-age), now.Add(-age))
	}
	removed, err := Prune(dir, 30*24*time.Hour, now)
	if err != nil || len(removed) != 1 || !strings.Contains(removed[0], "00000000000000000003") {
		t.Fatalf("Prune = %v, %v", removed, err)
	}
	if removed, _ := Prune(dir, 0, now); len(removed) != 0 {
		t.Fatal("a zero retention pruned files")
	}
}

// TestEvery: the periodic archiver moves what was logged before the
// current period and reports it.
func TestEvery(t *testing.T) {
	w := newWorld(t)
	w.exchange(t)
	w.stamp(t)
	a := w.archiver(0)
	// A clock one period ahead: everything logged so far is in a past period.
	a.Now = func() time.Time { return time.Now().Add(time.Hour) }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan []string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Every(ctx, time.Millisecond, func(written, pruned []string, err error) {
			if err != nil && ctx.Err() == nil {
				t.Error(err)
			}
			if len(written) > 0 {
				select {
				case got <- written:
				default:
				}
			}
		})
	}()
	files := <-got
	cancel()
	<-done
	if r := Verify(files, w.verifyOptions(0)); !r.OK() || r.Files[0].Messages != 2 {
		t.Fatalf("Every wrote %v: %v", files, r.Problems)
	}
}

// TestRunKeepsEntriesUntilVerified: clause 3.8.4's order. When the file
// cannot be written, or does not verify once read back, Run fails, the
// entries stay in the live store, and a later Run archives them.
func TestRunKeepsEntriesUntilVerified(t *testing.T) {
	w := newWorld(t)
	for range 2 {
		w.exchange(t)
	}
	w.stamp(t)
	ctx := context.Background()
	before := time.Now().Add(time.Minute)
	kept := func(when string) {
		t.Helper()
		if st := w.log.State(); st.Archived != 0 || st.Head != 4 {
			t.Fatalf("%s: state %+v, want nothing archived of 4 entries", when, st)
		}
		if n, err := w.log.Verify(); err != nil || n != 4 {
			t.Fatalf("%s: live store holds %d entries, %v; want 4", when, n, err)
		}
	}

	a := w.archiver(0)
	a.Dir = filepath.Join(w.dir, "no", "such", "dir")
	if files, err := a.Run(ctx, before); err == nil {
		t.Fatalf("Run into a missing directory wrote %v", files)
	}
	kept("file not written")

	a = w.archiver(0)
	a.TSARoots = newLocalTSA(t).roots // trusts another TSA: the read-back check fails
	files, err := a.Run(ctx, before)
	if err == nil || !strings.Contains(err.Error(), "does not verify after writing") {
		t.Fatalf("Run whose file fails its check = %v, %v", files, err)
	}
	kept("file not verified")

	files, err = w.archiver(0).Run(ctx, before)
	if err != nil || len(files) != 1 {
		t.Fatalf("Run after the faults: %v, %v", files, err)
	}
	if st := w.log.State(); st.Archived != 4 {
		t.Fatalf("state %+v after archiving, want archived 4", st)
	}
	if r := Verify(files, w.verifyOptions(0)); !r.OK() || r.Files[0].Messages != 4 {
		t.Fatalf("the file written after the faults: %+v %v", r.Files, r.Problems)
	}
}

// TestVerifyMissingEnds: with the archive head, verify names the entries of
// a deleted oldest or newest file; without it, a deleted oldest file is
// still found (the chain must start at entry 1) and the unknown end is
// noted. A head rewritten after a deletion that was no pruning still names
// the deleted file.
func TestVerifyMissingEnds(t *testing.T) {
	setup := func(t *testing.T) (*world, *Archiver, []string, VerifyOptions) {
		w := newWorld(t)
		for i := range 6 {
			w.exchange(t)
			if i%2 == 1 {
				w.stamp(t) // files 1-4, 5-8, 9-12
			}
		}
		a := w.archiver(4)
		a.Head = &HeadSigner{Key: w.cSigner.Key, Chain: []*x509.Certificate{w.cSigner.Cert}}
		files, err := a.Run(context.Background(), time.Now().Add(time.Minute))
		if err != nil || len(files) != 3 {
			t.Fatalf("Run: %v, %v", files, err)
		}
		opts := w.verifyOptions(0)
		opts.Head = filepath.Join(w.dir, HeadName)
		if r := Verify(files, opts); !r.OK() || r.Head == nil || r.Head.First != 1 ||
			r.Head.Last != 12 || len(r.Notes) != 0 {
			t.Fatalf("intact archives: %v %+v %v", r.Problems, r.Head, r.Notes)
		}
		return w, a, files, opts
	}
	want := func(t *testing.T, r *Report, file, contain string) {
		t.Helper()
		for _, p := range r.Problems {
			if p.File == file && strings.Contains(p.What, contain) {
				return
			}
		}
		t.Fatalf("no problem of %s containing %q; got %v", file, contain, r.Problems)
	}

	t.Run("oldest deleted", func(t *testing.T) {
		w, a, files, opts := setup(t)
		os.Remove(files[0])
		want(t, Verify(files[1:], opts), files[1], "entries 1 to 4 are missing")
		opts.Head = ""
		want(t, Verify(files[1:], opts), files[1], "entries 1 to 4 are missing")

		// The next round's head still starts at entry 1: only Prune moves it.
		w.exchange(t)
		w.stamp(t)
		// The archiver notices too.
		more, err := a.Run(context.Background(), time.Now().Add(time.Minute))
		if err == nil || !strings.Contains(err.Error(), "entries 1 to 4,") || len(more) != 1 {
			t.Fatalf("second run: %v, %v", more, err)
		}
		opts.Head = filepath.Join(w.dir, HeadName)
		r := Verify(append(files[1:], more...), opts)
		want(t, r, files[1], "entries 1 to 4 are missing")
		if r.Head.Last != 14 {
			t.Fatalf("head after the second run: %+v", r.Head)
		}
	})
	t.Run("newest deleted", func(t *testing.T) {
		_, a, files, opts := setup(t)
		os.Remove(files[2])
		r := Verify(files[:2], opts)
		want(t, r, opts.Head, "entries 9 to 12 are missing")
		want(t, r, opts.Head, files[1])
		if _, err := a.Run(context.Background(), time.Now()); err == nil ||
			!strings.Contains(err.Error(), "entries 9 to 12,") {
			t.Fatalf("the archiver's next round = %v, want entries 9 to 12 named", err)
		}

		opts.Head = ""
		r = Verify(files[:2], opts)
		if !r.OK() || len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "no archive head") {
			t.Fatalf("without the head: %v %v", r.Problems, r.Notes)
		}
		opts.Partial = true
		if r := Verify(files[1:2], opts); !r.OK() || len(r.Notes) != 0 {
			t.Fatalf("a partial check of the middle file: %v %v", r.Problems, r.Notes)
		}
	})
	t.Run("pruned", func(t *testing.T) {
		_, a, files, opts := setup(t)
		os.Remove(files[0])
		if err := a.writeHead(files[:1]); err != nil {
			t.Fatal(err)
		}
		r := Verify(files[1:], opts)
		if !r.OK() || r.Head.First != 5 {
			t.Fatalf("after pruning the oldest file: %v %+v", r.Problems, r.Head)
		}

		// Files pruned before there was a head: the first head starts at
		// the oldest file there is.
		os.Remove(opts.Head)
		os.Remove(files[1])
		if err := a.writeHead(nil); err != nil {
			t.Fatal(err)
		}
		if r := Verify(files[2:], opts); !r.OK() || r.Head.First != 9 || r.Head.Last != 12 {
			t.Fatalf("a first head after pruning: %v %+v", r.Problems, r.Head)
		}
	})
	t.Run("forged head", func(t *testing.T) {
		w, _, files, opts := setup(t)
		// A head signed by another member, claiming the archives end at 8.
		os.Remove(files[2])
		b, _ := os.ReadFile(opts.Head)
		h, _ := parseHead(b)
		h.Last, h.Member = 8, w.client.Member().String()
		content, _ := json.Marshal(h)
		der, err := cms.Sign(content, w.pSigner.Key, w.pSigner.Cert, cms.SignOptions{})
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(opts.Head, der, 0o600)
		want(t, Verify(files[:2], opts), opts.Head, "not by the signing certificate of member")
	})
}
