// Package swtpmtest makes TPM states for tests as a TPM vendor would: with
// swtpm_setup and swtpm's local certification authority, so that the TPM
// carries endorsement key certificates signed by a CA that nobody here
// wrote.
package swtpmtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/qapi-az/qapi/internal/testenv"
)

// Manufacture writes a new TPM 2.0 state into stateDir with swtpm_setup:
// RSA and ECC endorsement keys and their certificates in NV storage,
// signed by a local CA made in a folder of the test's. It returns the CA's
// certificates, root first then the issuing one, as PEM. It skips (fails
// in CI) where swtpm_setup is missing.
func Manufacture(t testing.TB, stateDir string) []byte {
	t.Helper()
	setup := testenv.NeedCommand(t, "swtpm_setup")
	localca := testenv.NeedCommand(t, "swtpm_localca")
	testenv.NeedCommand(t, "swtpm")
	ca := t.TempDir()
	files := map[string]string{
		"setup.conf": "create_certs_tool = " + localca + "\n" +
			"create_certs_tool_config = " + filepath.Join(ca, "localca.conf") + "\n" +
			"create_certs_tool_options = " + filepath.Join(ca, "localca.options") + "\n" +
			"active_pcr_banks = sha256\n",
		"localca.conf": "statedir = " + ca + "\n" +
			"signingkey = " + filepath.Join(ca, "signkey.pem") + "\n" +
			"issuercert = " + filepath.Join(ca, "issuercert.pem") + "\n" +
			"certserial = " + filepath.Join(ca, "certserial") + "\n",
		"localca.options": "--platform-manufacturer Qapi\n--platform-version 2.1\n" +
			"--platform-model test\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(ca, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(setup, "--tpm2", "--tpmstate", stateDir, "--create-ek-cert",
		"--config", filepath.Join(ca, "setup.conf")).CombinedOutput()
	if err != nil {
		t.Fatalf("swtpm_setup: %v\n%s", err, out)
	}
	var bundle []byte
	for _, name := range []string{"swtpm-localca-rootca-cert.pem", "issuercert.pem"} {
		b, err := os.ReadFile(filepath.Join(ca, name))
		if err != nil {
			t.Fatalf("swtpm_localca made no %s: %v", name, err)
		}
		bundle = append(bundle, b...)
	}
	return bundle
}
