package tpm

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/qapi-az/qapi/appliance/keys"
	"github.com/qapi-az/qapi/internal/swtpmtest"
	"github.com/qapi-az/qapi/internal/testenv"
)

// swtpm is a libtpms TPM in a swtpm process, the TPM the image's QEMU boot
// test gives the appliance: the same code against a second implementation.
type swtpm struct {
	*TPM
	cmd  *exec.Cmd
	conn net.Conn
}

// startSwtpm starts swtpm on the TPM state in dir (a new TPM if dir is
// empty, the same TPM again if not) and connects to it.
func startSwtpm(t *testing.T, bin, dir string) *swtpm {
	t.Helper()
	sock := filepath.Join(dir, "sock")
	os.Remove(sock)
	cmd := exec.Command(bin, "socket", "--tpm2", "--tpmstate", "dir="+dir,
		"--server", "type=unixio,path="+sock, "--flags", "not-need-init,startup-clear")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start swtpm: %v", err)
	}
	s := &swtpm{cmd: cmd}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("swtpm said: %s", stderr.Bytes())
		}
	})
	// Wait for the socket; the bound only turns a hang into a failure.
	for deadline := time.Now().Add(30 * time.Second); ; {
		conn, err := net.Dial("unix", sock)
		if err == nil {
			s.conn = conn
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("swtpm did not open %s: %v", sock, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.TPM = New(transport.FromReadWriter(s.conn))
	return s
}

// stop shuts the TPM down in order, as a clean power-off does, and ends
// the process.
func (s *swtpm) stop() {
	if s.cmd.Process == nil || s.cmd.ProcessState != nil {
		return
	}
	if s.conn != nil {
		tpm2.Shutdown{ShutdownType: tpm2.TPMSUClear}.Execute(s.t)
		s.conn.Close()
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

func TestSwtpm(t *testing.T) {
	bin := testenv.NeedCommand(t, "swtpm")
	dir := t.TempDir()
	operator := newKey(t)
	tp := startSwtpm(t, bin, dir)

	c, err := tp.Counter(0, &operator.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.Read()
	if err != nil {
		t.Fatal(err)
	}
	vals, err := tp.ReadPCRs([]int{7})
	if err != nil {
		t.Fatal(err)
	}
	approval := func(version uint64) *Approval {
		a := &Approval{PCRs: vals, Counter: c.Index(), Version: version}
		if err := a.Sign(operator); err != nil {
			t.Fatal(err)
		}
		return a
	}
	plain, err := tp.Seal([]byte("plain"), SealOptions{})
	if err != nil {
		t.Fatal(err)
	}
	authorized, err := tp.Seal([]byte("authorized"), SealOptions{Authority: &operator.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := tp.Unseal(plain, nil); err != nil || string(got) != "plain" {
		t.Fatalf("Unseal sealed to PCR 7 = %q, %v", got, err)
	}
	if got, err := tp.Unseal(authorized, approval(v)); err != nil ||
		string(got) != "authorized" {
		t.Fatalf("Unseal sealed to the operator = %q, %v", got, err)
	}

	// Power cycle: the same TPM state, in a new process.
	tp.stop()
	tp = startSwtpm(t, bin, dir)
	if c, err = tp.Counter(0, &operator.PublicKey); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Read(); err != nil || got != v {
		t.Fatalf("after a power cycle the counter reads %d, %v; want %d", got, err, v)
	}
	if got, err := tp.Unseal(plain, nil); err != nil || string(got) != "plain" {
		t.Fatalf("Unseal after a power cycle = %q, %v", got, err)
	}
	if err := c.Advance(signAdvance(t, c, operator, v+1)); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Unseal(authorized, approval(v)); !errors.Is(err, ErrNotApproved) {
		t.Fatalf("Unseal with an approval the counter voided: %v, want ErrNotApproved", err)
	}
	if _, err := tp.Unseal(authorized, approval(v+1)); err != nil {
		t.Fatalf("Unseal with the current approval: %v", err)
	}
	if err := c.Advance(signAdvance(t, c, operator, v)); !errors.Is(err, ErrRollback) {
		t.Fatalf("Advance backwards: %v, want ErrRollback", err)
	}
	if err := tp.ExtendPCR(7, sha256.Sum256([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Unseal(plain, nil); !errors.Is(err, ErrPCRMismatch) {
		t.Fatalf("Unseal after extending PCR 7: %v, want ErrPCRMismatch", err)
	}

	other := startSwtpm(t, bin, t.TempDir())
	if _, err := other.Unseal(plain, nil); !errors.Is(err, ErrOtherTPM) {
		t.Fatalf("Unseal on another swtpm: %v, want ErrOtherTPM", err)
	}
	name1, _ := tp.SRKName()
	name2, _ := other.SRKName()
	if bytes.Equal(name1, name2) {
		t.Fatal("two swtpm TPMs have the same storage root key")
	}

	// Open takes an emulator's socket as it takes a device, and the store
	// opens it by itself. swtpm serves one connection at a time.
	tp.conn.Close()
	tp.conn = nil
	sock := filepath.Join(dir, "sock")
	dev, err := Open(filepath.Join(dir, "no-such-device"), sock)
	if err != nil {
		t.Fatalf("Open of swtpm's socket: %v", err)
	}
	if got, err := dev.SRKName(); err != nil || !bytes.Equal(got, name1) {
		t.Fatalf("through Open the storage root key is %x, %v; want %x", got, err, name1)
	}
	dc, err := dev.Counter(0, &operator.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := dc.Read(); err != nil || got != v+1 {
		t.Fatalf("through Open the counter reads %d, %v; want %d", got, err, v+1)
	}
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
	saved := DevicePaths
	DevicePaths = []string{sock}
	defer func() { DevicePaths = saved }()
	s, err := OpenStore(false, filepath.Join(dir, "keys"), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Signer(keys.Signing); err != nil {
		t.Fatalf("Signer of a store on swtpm: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// manufactureSwtpm makes a TPM state in dir as a vendor would
// (swtpmtest.Manufacture) and returns its CA's root and intermediate
// certificates.
func manufactureSwtpm(t *testing.T, dir string) (roots, intermediates *x509.CertPool) {
	t.Helper()
	roots, intermediates, err := ParseManufacturerCertificates(swtpmtest.Manufacture(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	return roots, intermediates
}

// TestSwtpmEndorsement checks the storage root key of a libtpms TPM whose
// endorsement key certificate was made by a tool nobody here wrote,
// swtpm_setup with swtpm's local CA, and refuses the same TPM against
// another vendor's roots.
func TestSwtpmEndorsement(t *testing.T) {
	bin := testenv.NeedCommand(t, "swtpm")
	dir := t.TempDir()
	roots, intermediates := manufactureSwtpm(t, dir)
	s := startSwtpm(t, bin, dir)

	e, err := s.CheckEndorsement(roots, intermediates)
	if err != nil {
		t.Fatalf("the endorsement of a TPM made by swtpm_setup: %v", err)
	}
	if len(e.SRKName) == 0 || len(e.Chain) < 2 {
		t.Fatalf("endorsement %+v: want the storage root key's name and a chain to the root", e)
	}
	t.Logf("EK certificate %q (%s key) from %q verified; storage root key %x…",
		e.Certificate.Subject, e.Certificate.PublicKeyAlgorithm, e.Certificate.Issuer,
		e.SRKName[:8])

	other, otherInt := manufactureSwtpm(t, t.TempDir())
	_, err = s.CheckEndorsement(other, otherInt)
	if !errors.Is(err, ErrEndorsement) {
		t.Fatalf("against another vendor's roots: %v, want an ErrEndorsement", err)
	}
	t.Logf("against another vendor's roots: %v", err)
}

// TestParseManufacturerCertificatesRefusesEmpty: a file without a PEM
// certificate is an error, not an empty trust list.
func TestParseManufacturerCertificatesRefusesEmpty(t *testing.T) {
	for _, data := range []string{"", "not PEM", "-----BEGIN CERTIFICATE-----\nAAAA\n" +
		"-----END CERTIFICATE-----\n"} {
		if _, _, err := ParseManufacturerCertificates([]byte(data)); err == nil {
			t.Errorf("%q accepted as manufacturer certificates", data)
		}
	}
}
