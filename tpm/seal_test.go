package tpm

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

func TestSealUnseal(t *testing.T) {
	tests := []struct {
		name string
		pcrs []int
	}{
		{"default PCR 7", nil},
		{"PCRs 0, 7 and 11", []int{11, 0, 7}},
		{"nine PCRs, more than one read returns", []int{0, 1, 2, 3, 4, 5, 6, 7, 8}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp := newSim(t)
			secret := []byte("the message-log key, 32 bytes...")
			b, err := tp.Seal(secret, SealOptions{PCRs: tt.pcrs})
			if err != nil {
				t.Fatal(err)
			}
			want := tt.pcrs
			if want == nil {
				want = DefaultPCRs
			}
			want = slices.Sorted(slices.Values(want))
			if got := pcrIndexes(b.PCRs); !slices.Equal(got, want) {
				t.Errorf("blob records PCRs %v, want %v", got, want)
			}
			got, err := tp.Unseal(b, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, secret) {
				t.Errorf("Unseal = %q, want %q", got, secret)
			}
		})
	}
}

func TestSealRefusesBadInput(t *testing.T) {
	tp := newSim(t)
	for _, tt := range []struct {
		name   string
		secret []byte
		pcrs   []int
	}{
		{"empty secret", nil, nil},
		{"secret too long", make([]byte, MaxSecret+1), nil},
		{"PCR 24", []byte("x"), []int{24}},
		{"no PCRs", []byte("x"), []int{}},
	} {
		if _, err := tp.Seal(tt.secret, SealOptions{PCRs: tt.pcrs}); err == nil {
			t.Errorf("%s: Seal succeeded", tt.name)
		}
	}
}

// A power cycle resets the PCRs to the same values a boot of the same
// image measures again; the blob, read back from disk, still unseals.
func TestUnsealAfterReboot(t *testing.T) {
	tp := newSim(t)
	measure := sha256.Sum256([]byte("secure boot state"))
	if err := tp.ExtendPCR(7, measure); err != nil {
		t.Fatal(err)
	}
	b, err := tp.Seal([]byte("secret"), SealOptions{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "x.sealed")
	if err := WriteBlobFile(path, b); err != nil {
		t.Fatal(err)
	}

	tp.reboot(t)
	b, err = ReadBlobFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Unseal(b, nil); !errors.Is(err, ErrPCRMismatch) {
		t.Fatalf("Unseal before the boot chain measured again: %v, want ErrPCRMismatch", err)
	}
	if err := tp.ExtendPCR(7, measure); err != nil {
		t.Fatal(err)
	}
	got, err := tp.Unseal(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "secret" {
		t.Errorf("Unseal = %q", got)
	}
}

func TestUnsealNamesChangedPCRs(t *testing.T) {
	tp := newSim(t)
	b, err := tp.Seal([]byte("secret"), SealOptions{PCRs: []int{0, 7, 11}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []int{11, 7} {
		if err := tp.ExtendPCR(p, sha256.Sum256([]byte("another kernel"))); err != nil {
			t.Fatal(err)
		}
	}
	_, err = tp.Unseal(b, nil)
	var pe *PCRMismatchError
	if !errors.As(err, &pe) {
		t.Fatalf("Unseal after extending PCRs 7 and 11: %v, want *PCRMismatchError", err)
	}
	if !slices.Equal(pe.PCRs, []int{7, 11}) {
		t.Errorf("mismatch names PCRs %v, want [7 11]", pe.PCRs)
	}
	if msg := err.Error(); !bytes.Contains([]byte(msg), []byte("PCRs 7, 11 differ")) {
		t.Errorf("message %q does not name PCRs 7, 11", msg)
	}
}

// The TPM itself enforces the policy: with the check before it skipped (a
// blob whose recorded values were edited to match), the TPM refuses.
func TestTPMEnforcesPCRPolicy(t *testing.T) {
	tp := newSim(t)
	b, err := tp.Seal([]byte("secret"), SealOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.ExtendPCR(7, sha256.Sum256([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	cur, err := tp.ReadPCRs([]int{7})
	if err != nil {
		t.Fatal(err)
	}
	forged := *b
	forged.PCRs = cur
	_, err = tp.Unseal(&forged, nil)
	if !errors.Is(err, tpm2.TPMRCPolicyFail) {
		t.Fatalf("Unseal of a blob whose expected PCR values were edited: %v, "+
			"want the TPM's policy failure", err)
	}
}

func TestUnsealOnAnotherTPM(t *testing.T) {
	a := newSim(t)
	b, err := a.Seal([]byte("secret"), SealOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a.close()

	other := newSim(t)
	_, err = other.Unseal(b, nil)
	var oe *OtherTPMError
	if !errors.As(err, &oe) || !errors.Is(err, ErrOtherTPM) {
		t.Fatalf("Unseal on another TPM: %v, want *OtherTPMError", err)
	}
	if !bytes.Contains([]byte(err.Error()), []byte("sealed by another TPM")) {
		t.Errorf("message %q does not say sealed by another TPM", err)
	}
}
