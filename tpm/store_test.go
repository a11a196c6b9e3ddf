package tpm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/qapi-az/qapi/appliance/keys"
)

func openStore(t testing.TB, tp *sim, dir string, opts StoreOptions) *Store {
	t.Helper()
	opts.TPM = tp.TPM
	s, err := OpenStore(false, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// storeKeys returns the public signing and authentication keys and the
// log secret of s.
func storeKeys(t testing.TB, s *Store) (sign, auth *ecdsa.PublicKey, secret []byte) {
	t.Helper()
	ks, err := s.Signer(keys.Signing)
	if err != nil {
		t.Fatalf("Signer(signing): %v", err)
	}
	ka, err := s.Signer(keys.Authentication)
	if err != nil {
		t.Fatalf("Signer(authentication): %v", err)
	}
	secret, err = s.Secret(keys.LogEncryption)
	if err != nil {
		t.Fatalf("Secret(log-encryption): %v", err)
	}
	return ks.Public().(*ecdsa.PublicKey), ka.Public().(*ecdsa.PublicKey), secret
}

func TestStoreSurvivesReopenAndReboot(t *testing.T) {
	for _, tt := range []struct {
		name      string
		authority bool
	}{
		{"sealed to PCR 7", false},
		{"sealed to the operator's approvals", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tp := newSim(t)
			dir := t.TempDir()
			var opts StoreOptions
			if tt.authority {
				operator := newKey(t)
				opts.Authority = &operator.PublicKey
				opts.Approval = approve(t, tp, operator, []int{7}, 0, 0)
			}
			s := openStore(t, tp, dir, opts)
			sign, auth, secret := storeKeys(t, s)
			if sign.Equal(auth) {
				t.Fatal("the signing and authentication keys are the same key")
			}
			if len(secret) != 32 {
				t.Fatalf("log secret has %d bytes", len(secret))
			}
			again, _, _ := storeKeys(t, s)
			if !again.Equal(sign) {
				t.Fatal("a second Signer call in one store returned another key")
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			for _, p := range []keys.Purpose{keys.Signing, keys.Authentication,
				keys.LogEncryption} {
				fi, err := os.Stat(filepath.Join(dir, string(p)+".sealed"))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o600 {
					t.Errorf("%s blob has mode %v, want 0600", p, fi.Mode().Perm())
				}
			}

			tp.reboot(t)
			s = openStore(t, tp, dir, opts)
			sign2, auth2, secret2 := storeKeys(t, s)
			if !sign2.Equal(sign) || !auth2.Equal(auth) || !bytes.Equal(secret2, secret) {
				t.Fatal("after reopen and reboot the store returned other keys")
			}
		})
	}
}

func TestStoreAfterUpdate(t *testing.T) {
	tp := newSim(t)
	dir := t.TempDir()
	operator := newKey(t)
	opts := StoreOptions{Authority: &operator.PublicKey,
		Approval: approve(t, tp, operator, []int{7}, 0, 0)}
	sign, _, _ := storeKeys(t, openStore(t, tp, dir, opts))

	// The next boot runs the updated image, which PCR 7 tells apart.
	tp.reboot(t)
	if err := tp.ExtendPCR(7, sha256.Sum256([]byte("image 2"))); err != nil {
		t.Fatal(err)
	}
	_, err := openStore(t, tp, dir, opts).Signer(keys.Signing)
	if !errors.Is(err, ErrPCRMismatch) || !strings.Contains(err.Error(), "PCR 7 differ") {
		t.Fatalf("Signer with the old image's approval: %v, want PCR 7 named", err)
	}
	opts.Approval = approve(t, tp, operator, []int{7}, 0, 0)
	got, err := openStore(t, tp, dir, opts).Signer(keys.Signing)
	if err != nil {
		t.Fatalf("Signer with the new image's approval: %v", err)
	}
	if !got.Public().(*ecdsa.PublicKey).Equal(sign) {
		t.Fatal("the updated image got another signing key")
	}
}

// Clause 6.2.3: on a TPM whose counter starts above 1, the store seals its
// keys for the counter's base, so the image's approval must name that base.
func TestStoreSealsForCounterBase(t *testing.T) {
	tp := newSim(t)
	dir := t.TempDir()
	operator := newKey(t)
	raiseCounters(t, tp, 9)
	c, err := tp.Counter(0, &operator.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	approval := func(base uint64) *Approval {
		a := approve(t, tp, operator, []int{7}, c.Index(), 1)
		a.Base = base
		if err := a.Sign(operator); err != nil {
			t.Fatal(err)
		}
		return a
	}

	opts := StoreOptions{Authority: &operator.PublicKey, Approval: approval(1)}
	_, err = openStore(t, tp, dir, opts).Signer(keys.Signing)
	if !errors.Is(err, ErrNotApproved) ||
		!strings.Contains(err.Error(), fmt.Sprintf("approval for base %d", c.Base())) {
		t.Fatalf("Signer with an approval for base 1 on a counter of base %d: %v, want "+
			"ErrNotApproved naming the base", c.Base(), err)
	}
	if _, err := os.Stat(filepath.Join(dir, "signing.sealed")); err == nil {
		t.Fatal("a key that does not unseal was stored")
	}

	opts.Approval = approval(c.Base())
	if _, err := openStore(t, tp, dir, opts).Signer(keys.Signing); err != nil {
		t.Fatalf("Signer with an approval for the counter's base: %v", err)
	}
	b, err := ReadBlobFile(filepath.Join(dir, "signing.sealed"))
	if err != nil {
		t.Fatal(err)
	}
	if b.Base != c.Base() {
		t.Errorf("the blob is sealed for base %d, want %d", b.Base, c.Base())
	}
}

func TestStoreOnAnotherTPM(t *testing.T) {
	a := newSim(t)
	dir := t.TempDir()
	storeKeys(t, openStore(t, a, dir, StoreOptions{}))
	path := filepath.Join(dir, "signing.sealed")
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a.close()

	b := newSim(t)
	_, err = openStore(t, b, dir, StoreOptions{}).Signer(keys.Signing)
	if !errors.Is(err, ErrOtherTPM) {
		t.Fatalf("Signer on another TPM: %v, want ErrOtherTPM", err)
	}
	after, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(before, after) {
		t.Fatalf("the blob changed after a failed unseal (%v): a key must never be replaced", err)
	}
}

func TestStoreConcurrentFirstUse(t *testing.T) {
	tp := newSim(t)
	s := openStore(t, tp, t.TempDir(), StoreOptions{})
	var wg sync.WaitGroup
	pubs := make([]*ecdsa.PublicKey, 8)
	for i := range pubs {
		wg.Go(func() {
			k, err := s.Signer(keys.Signing)
			if err != nil {
				t.Error(err)
				return
			}
			pubs[i] = k.Public().(*ecdsa.PublicKey)
		})
	}
	wg.Wait()
	for _, p := range pubs[1:] {
		if p == nil || !p.Equal(pubs[0]) {
			t.Fatal("concurrent first calls returned different keys")
		}
	}
}

func TestOpenStoreRefusals(t *testing.T) {
	if _, err := OpenStore(true, t.TempDir(), StoreOptions{}); !errors.Is(err, ErrDevMode) {
		t.Errorf("OpenStore in development mode: %v, want ErrDevMode", err)
	}

	dir := t.TempDir()
	saved := DevicePaths
	DevicePaths = []string{filepath.Join(dir, "tpmrm0"), filepath.Join(dir, "tpm0")}
	defer func() { DevicePaths = saved }()
	_, err := OpenStore(false, t.TempDir(), StoreOptions{})
	if !errors.Is(err, ErrNoTPM) {
		t.Fatalf("OpenStore without a TPM: %v, want ErrNoTPM", err)
	}
	for _, p := range DevicePaths {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not name %s", err, p)
		}
	}

	tp := newSim(t)
	operator := newKey(t)
	_, err = OpenStore(false, t.TempDir(), StoreOptions{TPM: tp.TPM,
		Authority: &operator.PublicKey})
	if !errors.Is(err, ErrNotApproved) {
		t.Errorf("OpenStore with an authority and no approval: %v, want ErrNotApproved", err)
	}
	s := openStore(t, tp, t.TempDir(), StoreOptions{})
	if _, err := s.Signer(keys.LogEncryption); err == nil {
		t.Error("Signer(log-encryption) succeeded")
	}
	if _, err := s.Secret(keys.Signing); err == nil {
		t.Error("Secret(signing) succeeded")
	}
}

// Dictionary-attack lockout blocks objects authorised by a password. The
// store's blobs have none (policy only, noDA), so a lockout that another
// program caused leaves the keys usable, while Status and the error of a
// password object say what happened and how long to wait.
func TestLockout(t *testing.T) {
	tp := newSim(t)
	dir := t.TempDir()
	sign, _, _ := storeKeys(t, openStore(t, tp, dir, StoreOptions{}))

	err := lockOut(t, tp.TPM)
	le := &LockoutError{}
	if !errors.As(err, &le) || !errors.Is(err, ErrLockout) {
		t.Fatalf("wrong passwords until lockout: %v, want *LockoutError", err)
	}
	t.Logf("%v", err)
	if le.MaxTries == 0 || le.FailedTries < le.MaxTries {
		t.Errorf("LockoutError = %+v: tries not reported", le)
	}
	if !strings.Contains(err.Error(), "wait") {
		t.Errorf("lockout message %q does not say what to do", err)
	}
	st, err := tp.Status()
	if err != nil {
		t.Fatal(err)
	}
	if !st.InLockout {
		t.Errorf("Status = %+v, want InLockout", st)
	}

	tp.reboot(t)
	got, err := openStore(t, tp, dir, StoreOptions{}).Signer(keys.Signing)
	if err != nil {
		t.Fatalf("Signer during lockout: %v", err)
	}
	if !got.Public().(*ecdsa.PublicKey).Equal(sign) {
		t.Fatal("Signer during lockout returned another key")
	}
}

// lockOut makes a password-protected object under the storage root key and
// unseals it with a wrong password until the TPM locks out, returning the
// error that lockout gives, as explained by the package.
func lockOut(t testing.TB, tp *TPM) error {
	t.Helper()
	k, err := tp.loadSRK()
	if err != nil {
		t.Fatal(err)
	}
	defer tp.flush(k.handle)
	created, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: k.handle, Name: k.name,
			Auth: tpm2.PasswordAuth(nil)},
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			UserAuth: tpm2.TPM2BAuth{Buffer: []byte("1234")},
			Data:     tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: []byte("x")}),
		}},
		InPublic: tpm2.New2B(tpm2.TPMTPublic{
			Type:             tpm2.TPMAlgKeyedHash,
			NameAlg:          tpm2.TPMAlgSHA256,
			ObjectAttributes: tpm2.TPMAObject{FixedTPM: true, FixedParent: true, UserWithAuth: true},
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash,
				&tpm2.TPMSKeyedHashParms{Scheme: tpm2.TPMTKeyedHashScheme{
					Scheme: tpm2.TPMAlgNull}}),
		}),
	}.Execute(tp.t)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: k.handle, Name: k.name,
			Auth: tpm2.PasswordAuth(nil)},
		InPrivate: created.OutPrivate,
		InPublic:  created.OutPublic,
	}.Execute(tp.t)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.flush(obj.ObjectHandle)
	for range 100 {
		_, err := tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: obj.ObjectHandle,
			Name: obj.Name, Auth: tpm2.PasswordAuth([]byte("0000"))}}.Execute(tp.t)
		if errors.Is(err, tpm2.TPMRCLockout) {
			return tp.explain(err)
		}
		if err == nil {
			t.Fatal("unsealed with a wrong password")
		}
	}
	t.Fatal("100 wrong passwords did not lock the TPM out")
	return nil
}
