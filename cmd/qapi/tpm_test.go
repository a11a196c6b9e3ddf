package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qapi-az/qapi/internal/testenv"
)

// tpmRun runs `qapi tpm args...` in this process and returns its exit code
// and what it wrote to stdout and stderr.
func tpmRun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return captureOutput(t, func() int { return runTPM(args) })
}

// captureOutput runs fn with os.Stdout and os.Stderr sent to files.
func captureOutput(t *testing.T, fn func() int) (code int, stdout, stderr string) {
	t.Helper()
	dir := t.TempDir()
	out, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	errf, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer errf.Close()
	saveOut, saveErr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = out, errf
	code = fn()
	os.Stdout, os.Stderr = saveOut, saveErr
	return code, readFile(t, out.Name()), readFile(t, errf.Name())
}

// startSwtpm starts a new swtpm TPM and returns the path of its socket,
// which -device takes as it takes /dev/tpmrm0.
func startSwtpm(t *testing.T) string {
	t.Helper()
	bin := testenv.NeedCommand(t, "swtpm")
	dir := t.TempDir()
	sock := filepath.Join(dir, "sock")
	cmd := exec.Command(bin, "socket", "--tpm2", "--tpmstate", "dir="+dir,
		"--server", "type=unixio,path="+sock, "--flags", "not-need-init,startup-clear")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start swtpm: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	// swtpm serves one connection at a time: wait for the socket to exist,
	// without connecting to it.
	for deadline := time.Now().Add(30 * time.Second); ; {
		if fi, err := os.Stat(sock); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return sock
		}
		if time.Now().After(deadline) {
			t.Fatalf("swtpm did not open %s", sock)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTPMCommand drives `qapi tpm` against swtpm: seal and unseal a file,
// an operator's approval, and the counter refusing to move back (clause
// 6.2.3).
func TestTPMCommand(t *testing.T) {
	dev := startSwtpm(t)
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("message-log key"), 0o600); err != nil {
		t.Fatal(err)
	}

	if code, out, errs := tpmRun(t, "status", "-device", dev); code != 0 ||
		!strings.Contains(out, "storage root key") {
		t.Fatalf("qapi tpm status = %d, %q, %q", code, out, errs)
	}

	// swtpm, set up without an EK certificate, has nothing to check.
	roots := filepath.Join(dir, "roots.pem")
	os.WriteFile(roots, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE",
		Bytes: tpmTestRoot(t)}), 0o644)
	if code, _, errs := tpmRun(t, "endorsement", "-device", dev, "-roots", roots); code != 1 ||
		!strings.Contains(errs, "no endorsement key certificate") {
		t.Errorf("qapi tpm endorsement on swtpm = %d, %q; want no certificate", code, errs)
	}

	blob := filepath.Join(dir, "secret.sealed")
	if code, _, errs := tpmRun(t, "seal", "-device", dev, "-pcrs", "0,7", "-out", blob,
		secret); code != 0 {
		t.Fatalf("qapi tpm seal = %d: %s", code, errs)
	}
	back := filepath.Join(dir, "back")
	if code, _, errs := tpmRun(t, "unseal", "-device", dev, "-out", back, blob); code != 0 {
		t.Fatalf("qapi tpm unseal = %d: %s", code, errs)
	}
	if got := readFile(t, back); got != "message-log key" {
		t.Fatalf("unsealed %q", got)
	}
	if fi, err := os.Stat(back); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("unsealed file: %v, %v; want mode 0600", fi.Mode(), err)
	}
	// The secret is never written over an existing file.
	if code, _, _ := tpmRun(t, "unseal", "-device", dev, "-out", back, blob); code == 0 {
		t.Error("qapi tpm unseal over an existing file succeeded")
	}

	// Sealed to the operator's key, unsealed with its approval.
	op, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := x509.MarshalPKCS8PrivateKey(op)
	pub, _ := x509.MarshalPKIXPublicKey(&op.PublicKey)
	keyFile, pubFile := filepath.Join(dir, "op.key"), filepath.Join(dir, "op.pub")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv}),
		0o600)
	os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
		0o644)
	ablob := filepath.Join(dir, "approved.sealed")
	if code, _, errs := tpmRun(t, "seal", "-device", dev, "-authority", pubFile, "-out", ablob,
		secret); code != 0 {
		t.Fatalf("qapi tpm seal -authority = %d: %s", code, errs)
	}
	if code, _, errs := tpmRun(t, "unseal", "-device", dev, "-out",
		filepath.Join(dir, "x"), ablob); code == 0 || !strings.Contains(errs, "approval") {
		t.Errorf("qapi tpm unseal without an approval = %d, %q; want a refusal", code, errs)
	}
	approval := filepath.Join(dir, "approval.json")
	if code, _, errs := tpmRun(t, "approve", "-device", dev, "-key", keyFile, "-pcrs", "7",
		"-out", approval); code != 0 {
		t.Fatalf("qapi tpm approve = %d: %s", code, errs)
	}
	if code, _, errs := tpmRun(t, "unseal", "-device", dev, "-approval", approval, "-out",
		filepath.Join(dir, "y"), ablob); code != 0 {
		t.Fatalf("qapi tpm unseal -approval = %d: %s", code, errs)
	}

	// The counter moves only by the operator's signed advance.
	if code, _, errs := tpmRun(t, "counter", "-device", dev, "read"); code != 1 ||
		!strings.Contains(errs, "-authority") {
		t.Errorf("qapi tpm counter read without -authority = %d, %q; want a refusal", code,
			errs)
	}
	advance := func(version string, key string) string {
		t.Helper()
		out := filepath.Join(dir, "advance-"+version+".json")
		if code, _, errs := tpmRun(t, "advance", "-key", key, "-version", version,
			"-out", out); code != 0 {
			t.Fatalf("qapi tpm advance -version %s = %d: %s", version, code, errs)
		}
		return out
	}
	intruder, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ipriv, _ := x509.MarshalPKCS8PrivateKey(intruder)
	intruderKey := filepath.Join(dir, "intruder.key")
	os.WriteFile(intruderKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY",
		Bytes: ipriv}), 0o600)
	if code, _, errs := tpmRun(t, "counter", "-device", dev, "-authority", pubFile, "advance",
		advance("5", intruderKey)); code != 1 || !strings.Contains(errs, "not approved") {
		t.Errorf("qapi tpm counter advance by another key = %d, %q; want a refusal", code,
			errs)
	}
	if code, out, errs := tpmRun(t, "counter", "-device", dev, "-authority", pubFile,
		"advance", advance("3", keyFile)); code != 0 || !strings.Contains(out, ": 3 ") ||
		!strings.Contains(out, "base 1") {
		t.Fatalf("qapi tpm counter advance 3 = %d, %q, %q", code, out, errs)
	}
	code, _, errs := tpmRun(t, "counter", "-device", dev, "-authority", pubFile, "advance",
		advance("2", keyFile))
	if code != 1 || !strings.Contains(errs, "refuses to move back") {
		t.Errorf("qapi tpm counter advance 2 = %d, %q; want a refusal", code, errs)
	}
	if code, out, _ := tpmRun(t, "counter", "-device", dev, "-authority", pubFile,
		"read"); code != 0 || !strings.Contains(out, ": 3 ") {
		t.Errorf("qapi tpm counter read = %d, %q; want 3", code, out)
	}

	// An approval of version 2 no longer opens the keys; one of 3 does.
	for _, tt := range []struct {
		version string
		ok      bool
	}{{"2", false}, {"3", true}} {
		approval := filepath.Join(dir, "approval-"+tt.version+".json")
		if code, _, errs := tpmRun(t, "approve", "-device", dev, "-key", keyFile, "-pcrs", "7",
			"-version", tt.version, "-out", approval); code != 0 {
			t.Fatalf("qapi tpm approve -version %s = %d: %s", tt.version, code, errs)
		}
		code, _, errs := tpmRun(t, "unseal", "-device", dev, "-approval", approval, "-out",
			filepath.Join(dir, "v"+tt.version), ablob)
		if (code == 0) != tt.ok {
			t.Errorf("qapi tpm unseal with version %s's approval at version 3 = %d, %q",
				tt.version, code, errs)
		}
	}
}

func TestTPMCommandWithoutTPM(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "tpmrm0")
	code, _, errs := tpmRun(t, "status", "-device", missing)
	if code != 1 || !strings.Contains(errs, "no TPM 2.0 found") ||
		!strings.Contains(errs, missing) {
		t.Errorf("qapi tpm status without a TPM = %d, %q", code, errs)
	}
	if code, _, errs := tpmRun(t, "nosuch", "-device", missing); code != 2 ||
		!strings.Contains(errs, `unknown subcommand "nosuch"`) {
		t.Errorf("qapi tpm nosuch = %d, %q; want the usage", code, errs)
	}
	if code, _, errs := tpmRun(t, "endorsement", "-device", missing); code != 1 ||
		!strings.Contains(errs, "-roots") {
		t.Errorf("qapi tpm endorsement without -roots = %d, %q", code, errs)
	}
	if code, _, _ := tpmRun(t, "pcrs", "-pcrs", "7,x"); code != 1 {
		t.Error("-pcrs 7,x was accepted")
	}
}

// tpmTestRoot returns a self-signed CA certificate, standing in for a TPM
// manufacturer's root.
func tpmTestRoot(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "TPM maker root"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
