package images

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/server"
	"github.com/qapi-az/qapi/gokrazy"
	"github.com/qapi-az/qapi/images/gpt"
	"github.com/qapi-az/qapi/internal/sampleis"
	"github.com/qapi-az/qapi/internal/testenv"
	"github.com/qapi-az/qapi/internal/testpki"
)

// needBuildTools skips (or in CI fails) a test that builds an image
// without the Debian tools the builder runs.
func needBuildTools(t *testing.T) {
	t.Helper()
	testenv.NeedRoot(t) // apt-get download into the system cache
	for _, c := range []string{"go", "apt-get", "apt-cache", "dpkg-deb", "mksquashfs",
		"mkfs.vfat", "mcopy", "mmd", "mdir", "mke2fs"} {
		testenv.NeedCommand(t, c)
	}
	testenv.NeedFile(t, DefaultSystemdBoot)
}

func moduleDir(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

var programs struct {
	once sync.Once
	dir  string
	err  error
}

// builtPrograms builds the default instance's programs once for all tests.
func builtPrograms(t *testing.T) string {
	t.Helper()
	programs.once.Do(func() {
		programs.dir, programs.err = os.MkdirTemp("", "qapi-images-test-")
		if programs.err != nil {
			return
		}
		programs.err = BuildPrograms(context.Background(), testConfig(t, ""), programs.dir)
	})
	if programs.err != nil {
		t.Fatal(programs.err)
	}
	return programs.dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if programs.dir != "" {
		os.RemoveAll(programs.dir)
	}
	os.Exit(code)
}

func testConfig(t *testing.T, out string) Config {
	return Config{
		Output:    out,
		Size:      1 << 30,
		Instance:  gokrazy.Default(false),
		ModuleDir: moduleDir(t),
		Version:   "test",
	}
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// mdir lists a folder of the image's boot partition with mtools.
func mdir(t *testing.T, img string, tab *gpt.Table, dir string) string {
	t.Helper()
	cmd := exec.Command("mdir", "-b", "-i", fmt.Sprintf("%s@@%d", img,
		tab.Partitions[0].Offset()), "::"+dir)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mdir %s: %v\n%s", dir, err, out)
	}
	return string(out)
}

func readTable(t *testing.T, img string) *gpt.Table {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	tab, err := gpt.Read(f, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// TestReproducible builds the programs twice and assembles an image from
// each build, with the same kernel, and compares the bytes; then checks the
// progress lines, that every program is pure Go, and the layout gokrazy
// expects.
//
// TODO: both builds share the host's Go build cache; a build with an empty
// cache, or on another machine, is not compared.
func TestReproducible(t *testing.T) {
	needBuildTools(t)
	dir := t.TempDir()
	bins := []string{builtPrograms(t), filepath.Join(dir, "bin1")}
	var built strings.Builder
	c := testConfig(t, "")
	c.Progress = &built
	if err := BuildPrograms(context.Background(), c, bins[1]); err != nil {
		t.Fatal(err)
	}
	// From a warm cache go build compiles nothing: the count may be 0.
	if !strings.Contains(built.String(), "\ngo build: compiled ") {
		t.Errorf("BuildPrograms' progress does not say when go build ended:\n%s", &built)
	}
	for _, name := range programNames(t, bins[0]) {
		a, b := sha256File(t, filepath.Join(bins[0], name)),
			sha256File(t, filepath.Join(bins[1], name))
		if a != b {
			t.Errorf("two builds of %s differ: %s and %s", name, a, b)
		}
	}

	var sums []string
	var progress strings.Builder
	for i := range 2 {
		c := testConfig(t, filepath.Join(dir, fmt.Sprintf("disk%d.img", i)))
		if i == 0 {
			c.Progress = &progress
		}
		res, err := Assemble(context.Background(), c, bins[i])
		if err != nil {
			t.Fatal(err)
		}
		sums = append(sums, sha256File(t, c.Output))
		t.Logf("build %d: SHA-256 %s, root %d bytes, initramfs %d bytes", i, sums[i],
			res.RootBytes, res.InitBytes)
	}
	if sums[0] != sums[1] {
		t.Errorf("two builds from the same inputs differ: %s and %s", sums[0], sums[1])
	}
	lines := strings.Split(progress.String(), "\n")
	for _, step := range []string{"kernel ", "initramfs: ", "root slot: ", "boot partition: ",
		"perm: ", "wrote "} {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, step) }) {
			t.Errorf("the build's progress has no line starting %q:\n%s", step, &progress)
		}
	}

	img := filepath.Join(dir, "disk0.img")
	tab := readTable(t, img)
	if len(tab.Partitions) != 4 || tab.Partitions[0].Type != gpt.TypeESP {
		t.Fatalf("partitions %+v: want boot (ESP), root A, root B, perm", tab.Partitions)
	}
	if tab.NeedsGrow() {
		t.Error("a new image's table does not end at the disk's end")
	}
	if got := mdir(t, img, tab, "/EFI/BOOT"); !strings.Contains(got, "BOOTX64.EFI") {
		t.Errorf("no EFI/BOOT/BOOTX64.EFI on the boot partition:\n%s", got)
	}
	want := gokrazy.EntryName(gokrazy.SlotAPartition, BootTries)
	if got := mdir(t, img, tab, "/loader/entries"); !strings.Contains(got, want) {
		t.Errorf("no loader entry %s:\n%s", want, got)
	}
}

// TestBuildOutput feeds the lines go build -v prints, cut anywhere, and
// checks the packages counted and the errors kept.
func TestBuildOutput(t *testing.T) {
	text := "internal/goarch\ngithub.com/qapi-az/qapi/tpm\n" +
		"# github.com/qapi-az/qapi/cmd/qapi-init\n" +
		"cmd/qapi-init/perm.go:12:2: undefined: x\ngolang.org/x/sys/unix\nunended"
	for _, cut := range []int{1, 3, 7, len(text)} {
		b := &buildOutput{}
		for rest := text; rest != ""; {
			n := min(cut, len(rest))
			b.Write([]byte(rest[:n]))
			rest = rest[n:]
		}
		n, last := b.status()
		if n != 3 || last != "golang.org/x/sys/unix" {
			t.Errorf("cut every %d bytes: %d packages, the last %q; want 3, "+
				"golang.org/x/sys/unix", cut, n, last)
		}
		want := "# github.com/qapi-az/qapi/cmd/qapi-init\n" +
			"cmd/qapi-init/perm.go:12:2: undefined: x\nunended"
		if got := b.errors(); got != want {
			t.Errorf("cut every %d bytes: errors %q; want %q", cut, got, want)
		}
	}
}

// programNames lists the programs BuildPrograms wrote into bin.
func programNames(t *testing.T, bin string) []string {
	t.Helper()
	entries, err := os.ReadDir(bin)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) < 3 {
		t.Fatalf("%s holds %v: want the init, the initramfs init and the programs", bin, names)
	}
	return names
}

// TestProgramsPureGo checks that every program of the image was built with
// CGO_ENABLED=0 for linux/amd64 and is linked statically: the root slot
// has no C library and no dynamic loader.
func TestProgramsPureGo(t *testing.T) {
	needBuildTools(t)
	bin := builtPrograms(t)
	for _, name := range programNames(t, bin) {
		p := filepath.Join(bin, name)
		info, err := buildinfo.ReadFile(p)
		if err != nil {
			t.Errorf("%s: no Go build information: %v", name, err)
			continue
		}
		settings := map[string]string{}
		for _, s := range info.Settings {
			settings[s.Key] = s.Value
		}
		if settings["CGO_ENABLED"] != "0" || settings["GOOS"] != "linux" ||
			settings["GOARCH"] != "amd64" {
			t.Errorf("%s: built with CGO_ENABLED=%q GOOS=%q GOARCH=%q; want 0, linux, amd64",
				name, settings["CGO_ENABLED"], settings["GOOS"], settings["GOARCH"])
		}
		f, err := elf.Open(p)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP || prog.Type == elf.PT_DYNAMIC {
				t.Errorf("%s: dynamically linked (%v); the root slot has no loader", name,
					prog.Type)
			}
		}
		f.Close()
	}
}

// TestPermTemplate checks the empty perm file system the initramfs writes
// onto a perm partition without one: the same disk identity gives the
// same bytes, another gives other bytes, and dumpe2fs shows an ext4 of
// PermTemplateSize laid out for online growth to 4 TiB through reserved
// group descriptor blocks, with a journal that holds the transactions of
// that growth, and 8192 inodes in every group.
func TestPermTemplate(t *testing.T) {
	testenv.NeedCommand(t, "mke2fs")
	testenv.NeedCommand(t, "dumpe2fs")
	ctx := context.Background()
	var made [][]byte
	for _, id := range []string{"a", "a", "b"} {
		b, err := PermTemplate(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, b)
	}
	if !bytes.Equal(made[0], made[1]) {
		t.Error("two templates for the same disk identity differ")
	}
	if bytes.Equal(made[0], made[2]) {
		t.Error("templates for two disk identities are the same")
	}

	zr, err := gzip.NewReader(bytes.NewReader(made[0]))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "perm.ext4")
	if err := os.WriteFile(img, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("dumpe2fs", "-h", img).CombinedOutput()
	if err != nil {
		t.Fatalf("dumpe2fs: %v\n%s", err, out)
	}
	info := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			info[k] = strings.TrimSpace(v)
		}
	}
	num := func(k string) int64 {
		var n int64
		if _, err := fmt.Sscan(info[k], &n); err != nil {
			t.Errorf("dumpe2fs shows no %s:\n%s", k, out)
		}
		return n
	}
	if got := int64(len(raw)); got != PermTemplateSize ||
		num("Block count")*num("Block size") != got {
		t.Errorf("template of %d bytes holds %s blocks of %s; want %d bytes", got,
			info["Block count"], info["Block size"], PermTemplateSize)
	}
	wantUUID := strings.ToLower(gpt.Derive("a/perm-fs").String())
	if info["Filesystem volume name"] != "perm" || info["Filesystem UUID"] != wantUUID {
		t.Errorf("label %q, UUID %q; want perm, %s", info["Filesystem volume name"],
			info["Filesystem UUID"], wantUUID)
	}
	features := info["Filesystem features"]
	for _, f := range []string{"has_journal", "extent", "64bit", "resize_inode"} {
		if !strings.Contains(features, f) {
			t.Errorf("the template lacks the feature %s: %s", f, features)
		}
	}
	// Each group descriptor block of a 64bit file system describes
	// 4096/64 groups.
	perBlock := num("Block size") / 64
	growTo := (num("Reserved GDT blocks") + 1) * perBlock * num("Blocks per group") *
		num("Block size")
	if growTo < 4<<40 {
		t.Errorf("the reserved group descriptor blocks address %d GiB; want 4 TiB",
			growTo>>30)
	}
	// The kernel grows the file system in transactions that write every
	// reserved group descriptor block and a few more; jbd2 admits a
	// quarter of the journal in one.
	if max := num("Total journal blocks") / 4; num("Reserved GDT blocks")+16 > max {
		t.Errorf("the journal admits transactions of %d blocks; growth with %d reserved "+
			"group descriptor blocks needs more", max, num("Reserved GDT blocks"))
	}
	if n := num("Inodes per group"); n != 8192 {
		t.Errorf("%d inodes per group; want 8192, one per 16 KiB of a full group", n)
	}
}

func TestLayout(t *testing.T) {
	c := testConfig(t, "")
	c.defaults()
	tab, err := layout(c)
	if err != nil {
		t.Fatal(err)
	}
	const mib = 1 << 20
	for i, p := range tab.Partitions {
		if p.Offset()%mib != 0 || p.Size()%mib != 0 {
			t.Errorf("partition %d at %d, %d bytes: not MiB-aligned", i+1, p.Offset(), p.Size())
		}
	}
	if got := tab.Partitions[1].Size(); got != c.SlotSize {
		t.Errorf("slot A is %d bytes, want %d", got, c.SlotSize)
	}
	perm := tab.Partitions[3]
	if left := int64(tab.LastUsable()-perm.LastLBA) * gpt.SectorSize; left >= mib {
		t.Errorf("perm leaves %d bytes unused at the disk's end", left)
	}

	other := c
	other.DiskID = "another machine"
	tab2, err := layout(other)
	if err != nil {
		t.Fatal(err)
	}
	if tab2.DiskGUID == tab.DiskGUID || tab2.Partitions[0].GUID == tab.Partitions[0].GUID {
		t.Error("another disk identity gave the same GUIDs")
	}

	small := c
	small.Size = 512 * mib
	if _, err := layout(small); err == nil {
		t.Error("layout accepted a disk too small for the slots")
	}

	// Build says so before it compiles anything: the module folder does
	// not exist, so a build would fail otherwise.
	small.ModuleDir = filepath.Join(t.TempDir(), "no-module")
	_, err = Build(context.Background(), small)
	if err == nil || !strings.Contains(err.Error(), "too small") {
		t.Errorf("Build on a disk too small: %v; want the size refused first", err)
	}
}

// Parties of the boot test's exchange: one member with two subsystems, both
// served by the appliance, POLICE calling EDR's getPerson.
var (
	testMember = ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1001"}
	testPolice = ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1001",
		SubsystemCode: "POLICE"}
	testEDR = ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1001",
		SubsystemCode: "EDR"}
	testService = ident.Service{Client: testEDR, ServiceCode: sampleis.CodeGetPerson}
)

// testPortal is the boot test's certification centre and configuration
// operator.
type testPortal struct {
	ca *testpki.CA
	op *testpki.Cert // signs the global configuration
}

func newTestPortal(t *testing.T) *testPortal {
	t.Helper()
	ca, err := testpki.NewCA("Qapı image test CA")
	if err != nil {
		t.Fatal(err)
	}
	op, err := ca.IssueSigning(ident.Client{Instance: "AZ", MemberClass: "GOV",
		MemberCode: "OPERATOR"})
	if err != nil {
		t.Fatal(err)
	}
	return &testPortal{ca: ca, op: op}
}

// Where the boot test's server configuration keeps what registration
// brings, relative to /perm/qapi.
const (
	testAuthCert    = "manage/auth.pem"
	testSigningCert = "manage/signing.pem"
	testGlobalConf  = "globalconf.json"
)

// serverPerm writes, under dir, the state /perm/qapi holds on a security
// server before its certificates are issued: its configuration, with the
// keys sealed by the TPM where qapi-firstboot makes them and the
// management API waiting for the certificates, and the anchor. The
// provider's information system answers at isURL.
func (p *testPortal) serverPerm(t *testing.T, dir, isURL string) {
	t.Helper()
	anchor, err := json.Marshal(globalconf.Anchor{Instance: "AZ",
		Certs: [][]byte{p.op.Cert.Raw}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{
		Identity: server.Identity{Member: testMember.String(), ServerCode: "ss1",
			Clients: []string{testEDR.String(), testPolice.String()}},
		Listen:   server.Listen{ClientHTTP: "10.0.3.15:8080", Server: "10.0.2.15:8443"},
		TLS:      server.TLSFiles{AuthCert: testAuthCert, SigningCert: testSigningCert},
		KeyStore: server.KeyStoreTPM,
		TPM: server.TPMConfig{Dir: gokrazy.SealedDir,
			Devices: []string{gokrazy.TPMDevice}},
		Anchor: "anchor.json", GlobalConf: testGlobalConf,
		MessageLog: "messagelog.db", ConfigDB: "conf.db", LogLevel: "info",
		Services: []server.ServiceConfig{{Provider: testEDR.String(), URL: isURL}},
		AccessRights: []server.AccessRight{{Service: testService.String(),
			Subject: "subsystem:" + testPolice.String()}},
		Manage: &server.ManageConfig{Listen: fmt.Sprintf("10.0.3.15:%d", gokrazy.ManagePort),
			Dir: "manage"},
		MonitorSocket: gokrazy.MonitorSocket,
	}
	cfgJSON, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"qapi-server.json": cfgJSON,
		"anchor.json": anchor} {
		f := filepath.Join(dir, "qapi", name)
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// register issues the server's certificates for the public keys its
// first boot reported (PKIX DER) and a global configuration that pins its
// authentication certificate. It returns the files, by path relative to
// /perm/qapi, and the signing certificate.
func (p *testPortal) register(t *testing.T, signingKey, authKey []byte) (
	map[string][]byte, *x509.Certificate) {
	t.Helper()
	member := testMember.String()
	sign := p.issue(t, signingKey, &x509.Certificate{
		Subject:  pkix.Name{CommonName: member, SerialNumber: member},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment})
	auth := p.issue(t, authKey, &x509.Certificate{
		Subject:  pkix.Name{CommonName: member + "/ss1", SerialNumber: member + "/ss1"},
		KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth,
			x509.ExtKeyUsageClientAuth}})

	now := time.Now()
	conf := &globalconf.Conf{
		Instance: "AZ", Serial: 1, Issued: now.Add(-time.Hour), Expires: now.Add(24 * time.Hour),
		Members: []globalconf.Member{{ID: testMember, Name: "Ədliyyə Nazirliyi",
			Subsystems: []globalconf.Subsystem{{Code: "EDR"}, {Code: "POLICE"}}}},
		CAs: []globalconf.CA{{Name: "test", Cert: p.ca.Cert.Raw}},
		SecurityServers: []globalconf.SecurityServer{{Owner: testMember, Code: "ss1",
			Address: "10.0.2.15:8443", Clients: []ident.Client{testEDR, testPolice},
			AuthCertHashes: []string{globalconf.CertHash(auth.Raw)}}},
	}
	signed, err := globalconf.Sign(conf, p.op.Key, p.op.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		testAuthCert:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: auth.Raw}),
		testSigningCert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: sign.Raw}),
		testGlobalConf:  signed,
	}, sign
}

// issue signs a certificate from tmpl for the PKIX public key spki.
func (p *testPortal) issue(t *testing.T, spki []byte, tmpl *x509.Certificate) *x509.Certificate {
	t.Helper()
	pub, err := x509.ParsePKIXPublicKey(spki)
	if err != nil {
		t.Fatalf("public key from the appliance: %v", err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().AddDate(1, 0, 0)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca.Cert, pub, p.ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
