package tpm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// approve signs an approval of the current values of pcrs.
func approve(t testing.TB, tp *sim, key *ecdsa.PrivateKey, pcrs []int, counter uint32,
	version uint64) *Approval {
	t.Helper()
	vals, err := tp.ReadPCRs(pcrs)
	if err != nil {
		t.Fatal(err)
	}
	a := &Approval{PCRs: vals, Counter: counter, Version: version}
	if err := a.Sign(key); err != nil {
		t.Fatal(err)
	}
	return a
}

// An update changes PCR 7; the operator's approval of the new value lets
// the blob sealed before the update unseal, with no reseal.
func TestApprovalForUpdatedPCRs(t *testing.T) {
	tp := newSim(t)
	operator := newKey(t)
	secret := []byte("signing key")
	b, err := tp.Seal(secret, SealOptions{Authority: &operator.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.PCRs) != 0 || len(b.Authority) == 0 {
		t.Fatalf("blob sealed to an authority records PCRs %v, authority %x", b.PCRs,
			b.Authority)
	}
	old := approve(t, tp, operator, []int{7}, 0, 0)
	if got, err := tp.Unseal(b, old); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Unseal with the approval of the current image = %q, %v", got, err)
	}

	// The new image measures something else into PCR 7.
	if err := tp.ExtendPCR(7, sha256.Sum256([]byte("image 2"))); err != nil {
		t.Fatal(err)
	}
	_, err = tp.Unseal(b, old)
	var pe *PCRMismatchError
	if !errors.As(err, &pe) || !pe.Approved || !slices.Equal(pe.PCRs, []int{7}) {
		t.Fatalf("Unseal with the old image's approval: %v, want PCR 7 named", err)
	}
	updated := approve(t, tp, operator, []int{7}, 0, 0)
	if got, err := tp.Unseal(b, updated); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Unseal with the approval of the new image = %q, %v", got, err)
	}
	// The approval also travels as JSON in the image.
	js, err := MarshalApproval(updated)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "approval.json")
	if err := os.WriteFile(path, js, 0o644); err != nil {
		t.Fatal(err)
	}
	parsed, err := ReadApprovalFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Unseal(b, parsed); err != nil {
		t.Fatalf("Unseal with the approval read back from JSON: %v", err)
	}
}

func TestApprovalByAnotherKey(t *testing.T) {
	tp := newSim(t)
	operator, intruder := newKey(t), newKey(t)
	b, err := tp.Seal([]byte("signing key"), SealOptions{Authority: &operator.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	forged := approve(t, tp, intruder, []int{7}, 0, 0)
	if _, err := tp.Unseal(b, forged); !errors.Is(err, ErrNotApproved) {
		t.Fatalf("Unseal with an approval by another key: %v, want ErrNotApproved", err)
	}
	if _, err := tp.Unseal(b, nil); !errors.Is(err, ErrNotApproved) {
		t.Fatalf("Unseal without an approval: %v, want ErrNotApproved", err)
	}

	// With the software check skipped, the TPM itself refuses: the
	// intruder's key is not the one in the sealed policy.
	_, err = tp.unseal(b, &intruder.PublicKey, forged)
	if !errors.Is(err, tpm2.TPMRCPolicyFail) {
		t.Fatalf("TPM unseal with the intruder's approval: %v, want a policy failure", err)
	}

	// A tampered approval (other PCR values under the operator's
	// signature) fails both checks too.
	good := approve(t, tp, operator, []int{7}, 0, 0)
	tampered := *good
	tampered.PCRs = []PCRValue{{Index: 7, Value: bytes.Repeat([]byte{1}, 32)}}
	if _, err := tp.Unseal(b, &tampered); !errors.Is(err, ErrNotApproved) {
		t.Fatalf("Unseal with a tampered approval: %v, want ErrNotApproved", err)
	}
}

// An approval bound to the counter holds while the counter is at most its
// version; advancing the counter past it voids the old image's approval.
func TestApprovalVoidedByCounter(t *testing.T) {
	tp := newSim(t)
	operator := newKey(t)
	c, err := tp.Counter(0, &operator.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.Read()
	if err != nil {
		t.Fatal(err)
	}
	b, err := tp.Seal([]byte("signing key"), SealOptions{Authority: &operator.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	image1 := approve(t, tp, operator, []int{7}, c.Index(), v)
	image2 := approve(t, tp, operator, []int{7}, c.Index(), v+1)
	if _, err := tp.Unseal(b, image1); err != nil {
		t.Fatalf("Unseal with image %d's approval at counter %d: %v", v, v, err)
	}
	if err := c.Advance(signAdvance(t, c, operator, v+1)); err != nil {
		t.Fatal(err)
	}
	_, err = tp.Unseal(b, image1)
	if !errors.Is(err, ErrNotApproved) {
		t.Fatalf("Unseal with image %d's approval at counter %d: %v, want ErrNotApproved",
			v, v+1, err)
	}
	if want := fmt.Sprintf("is at %d", v+1); !strings.Contains(err.Error(), want) {
		t.Errorf("refusal %q does not say the counter %s", err, want)
	}
	t.Logf("%v", err)

	// Without the counter the TPM refuses the condition, and the error says
	// the counter is missing rather than past the version.
	missing := approve(t, tp, operator, []int{7}, c.Index()+2, v+1)
	_, err = tp.Unseal(b, missing)
	if !errors.Is(err, ErrNotApproved) || !strings.Contains(err.Error(), "cannot be read") {
		t.Fatalf("Unseal with an approval naming a missing counter: %v, want ErrNotApproved "+
			"saying the counter cannot be read", err)
	}
	if _, err := tp.Unseal(b, image2); err != nil {
		t.Fatalf("Unseal with image %d's approval at counter %d: %v", v+1, v+1, err)
	}
}

func TestApprovalPolicyDigestRejectsMalformed(t *testing.T) {
	val := make([]byte, 32)
	for _, tt := range []struct {
		name string
		pcrs []PCRValue
	}{
		{"no PCRs", nil},
		{"descending", []PCRValue{{7, val}, {0, val}}},
		{"duplicate", []PCRValue{{7, val}, {7, val}}},
		{"short value", []PCRValue{{7, val[:20]}}},
		{"PCR 30", []PCRValue{{30, val}}},
	} {
		a := &Approval{PCRs: tt.pcrs}
		if _, err := a.PolicyDigest(nil); err == nil {
			t.Errorf("%s: PolicyDigest succeeded", tt.name)
		}
	}
}
