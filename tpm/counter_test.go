package tpm

import (
	"bytes"
	"crypto/ecdsa"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// signAdvance signs an advance of c to version v with key.
func signAdvance(t testing.TB, c *Counter, key *ecdsa.PrivateKey, v uint64) *Advance {
	t.Helper()
	a := &Advance{Counter: c.Index(), Base: c.Base(), Version: v}
	if err := a.Sign(key); err != nil {
		t.Fatal(err)
	}
	return a
}

func TestCounterOnlyMovesForward(t *testing.T) {
	tp := newSim(t)
	operator := newKey(t)
	c, err := tp.Counter(0, &operator.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	start, err := c.Read()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a new counter has base %d and reads version %d", c.Base(), start)
	if start != 1 {
		t.Fatalf("a new counter reads version %d, want 1", start)
	}
	if err := c.Advance(signAdvance(t, c, operator, start+5)); err != nil {
		t.Fatal(err)
	}
	if err := c.Advance(signAdvance(t, c, operator, start+5)); err != nil {
		t.Errorf("Advance to the current value: %v", err)
	}
	err = c.Advance(signAdvance(t, c, operator, start+2))
	var re *RollbackError
	if !errors.As(err, &re) || !errors.Is(err, ErrRollback) {
		t.Fatalf("Advance backwards: %v, want *RollbackError", err)
	}
	if re.Current != start+5 || re.Requested != start+2 {
		t.Errorf("RollbackError = %+v", re)
	}
	if err := c.Advance(signAdvance(t, c, operator, start+5+MaxAdvance+1)); err == nil {
		t.Errorf("Advance by more than MaxAdvance succeeded")
	}

	// A power cycle keeps it; reopening finds the same counter.
	tp.reboot(t)
	c, err = tp.Counter(0, &operator.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.Read(); err != nil || got != start+5 {
		t.Fatalf("after reboot the counter reads %d, %v; want %d", got, err, start+5)
	}
	if err := c.Advance(signAdvance(t, c, operator, start+4)); !errors.Is(err, ErrRollback) {
		t.Fatalf("Advance backwards after reboot: %v, want ErrRollback", err)
	}
}

func TestCounterRefusesForeignIndex(t *testing.T) {
	tp := newSim(t)
	operator, other := newKey(t), newKey(t)
	if _, err := tp.Counter(0x81000001, &operator.PublicKey); err == nil {
		t.Errorf("Counter at a persistent-object handle succeeded")
	}
	if _, err := tp.Counter(0, nil); err == nil {
		t.Errorf("Counter without an authority succeeded")
	}
	// An ordinary NV index where the counter or its base would go is not
	// taken for either.
	if err := defineOrdinary(tp.TPM, DefaultCounterIndex+2); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Counter(DefaultCounterIndex+2, &operator.PublicKey); err == nil {
		t.Errorf("Counter over an ordinary NV index succeeded")
	}
	if err := defineOrdinary(tp.TPM, DefaultCounterIndex+0x11); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Counter(DefaultCounterIndex+0x10, &operator.PublicKey); err == nil {
		t.Errorf("Counter whose base index holds an ordinary NV index succeeded")
	}
	// The counter of one authority is not the counter of another.
	if _, err := tp.Counter(0, &operator.PublicKey); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Counter(0, &other.PublicKey); err == nil {
		t.Errorf("Counter of another authority over the operator's succeeded")
	}
}

// Clause 6.2.3: root on the box may delete the counter, since the owner
// authorisation is empty, but a counter defined again at the same index
// starts above every value the old one held, so it still refuses an image
// older than the newest committed one.
func TestCounterRedefinedDoesNotMoveBack(t *testing.T) {
	tp := newSim(t)
	operator := newKey(t)
	c, err := tp.Counter(0, &operator.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	start, err := c.Read()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Advance(signAdvance(t, c, operator, start+5)); err != nil {
		t.Fatal(err)
	}

	_, err = tpm2.NVUndefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(c.Index()), Name: mustName(t, c)},
	}.Execute(tp.t)
	if err != nil {
		t.Fatalf("delete the counter: %v", err)
	}
	if _, err := c.Read(); err == nil {
		t.Fatal("the deleted counter still reads")
	}

	c, err = tp.Counter(0, &operator.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Read()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("at %d when deleted, the counter defined again reads %d", start+5, got)
	if got < start+5 {
		t.Fatalf("the counter defined again reads %d, below the %d it held", got, start+5)
	}
	if err := c.Advance(signAdvance(t, c, operator, start+4)); !errors.Is(err, ErrRollback) {
		t.Fatalf("Advance to %d after redefinition: %v, want ErrRollback", start+4, err)
	}
}

// Clause 6.2.3: root on the box, who holds the empty owner authorisation,
// cannot advance the counter; only an advance the operator signed moves it,
// and no further than its version however often it is replayed.
func TestCounterAdvancesOnlyBySignature(t *testing.T) {
	tp := newSim(t)
	operator, intruder := newKey(t), newKey(t)
	c, err := tp.Counter(0, &operator.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	h := mustName(t, c)
	_, err = tpm2.NVIncrement{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(c.Index()), Name: h},
	}.Execute(tp.t)
	if err == nil {
		t.Fatal("an increment by the owner authorisation succeeded")
	}
	t.Logf("increment by the owner: %v", err)
	if err := c.firstIncrement(); err == nil {
		t.Fatal("the first-increment branch moved a counter already in use")
	}

	forged := &Advance{Counter: c.Index(), Base: c.Base(), Version: 3}
	if err := forged.Sign(intruder); err != nil {
		t.Fatal(err)
	}
	if err := c.Advance(forged); !errors.Is(err, ErrNotApproved) {
		t.Fatalf("Advance signed by another key: %v, want ErrNotApproved", err)
	}
	// With the software checks skipped, the TPM itself refuses.
	if err := c.advance(forged, 1); err == nil {
		t.Fatal("the TPM took an advance signed by another key")
	}
	if v, err := c.Read(); err != nil || v != 1 {
		t.Fatalf("after refused advances the counter reads %d, %v; want 1", v, err)
	}

	adv := signAdvance(t, c, operator, 3)
	if err := c.Advance(adv); err != nil {
		t.Fatalf("Advance signed by the operator: %v", err)
	}
	if v, err := c.Read(); err != nil || v != 3 {
		t.Fatalf("after the advance to 3 the counter reads %d, %v", v, err)
	}
	// Replayed past its version, the TPM refuses it.
	if err := c.advance(adv, 1); err == nil {
		t.Fatal("the TPM took an advance past its version")
	}
	if v, err := c.Read(); err != nil || v != 3 {
		t.Fatalf("after a replayed advance the counter reads %d, %v; want 3", v, err)
	}
	other := *adv
	other.Base = c.Base() + 7
	if err := c.Advance(&other); !errors.Is(err, ErrNotApproved) {
		t.Fatalf("Advance for another base: %v, want ErrNotApproved", err)
	}
}

// raiseCounters makes the TPM start its next counter above n, as a TPM
// whose counters were used before does: a throwaway counter is counted up
// to n and deleted.
func raiseCounters(t testing.TB, tp *sim, n int) {
	t.Helper()
	const index tpm2.TPMHandle = 0x01_00_77_00
	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	pub := tpm2.TPMSNVPublic{
		NVIndex:    index,
		NameAlg:    tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{NT: tpm2.TPMNTCounter, OwnerWrite: true, OwnerRead: true},
		DataSize:   8,
	}
	if _, err := (tpm2.NVDefineSpace{AuthHandle: owner,
		PublicInfo: tpm2.New2B(pub)}).Execute(tp.t); err != nil {
		t.Fatal(err)
	}
	for range n {
		rsp, err := tpm2.NVReadPublic{NVIndex: index}.Execute(tp.t)
		if err != nil {
			t.Fatal(err)
		}
		h := tpm2.NamedHandle{Handle: index, Name: rsp.NVName}
		if _, err := (tpm2.NVIncrement{AuthHandle: owner, NVIndex: h}).Execute(tp.t); err != nil {
			t.Fatal(err)
		}
	}
	rsp, err := tpm2.NVReadPublic{NVIndex: index}.Execute(tp.t)
	if err != nil {
		t.Fatal(err)
	}
	h := tpm2.NamedHandle{Handle: index, Name: rsp.NVName}
	if _, err := (tpm2.NVUndefineSpace{AuthHandle: owner, NVIndex: h}).Execute(tp.t); err != nil {
		t.Fatal(err)
	}
}

// Clause 6.2.3 on a TPM whose counters ran before: the counter starts
// above 1, its versions still start at 1, and approvals for that base
// follow them; an approval for base 1 whose raw counter value would pass
// opens nothing, because the keys are sealed for the box's base.
func TestCounterStartingHigh(t *testing.T) {
	tp := newSim(t)
	operator := newKey(t)
	raiseCounters(t, tp, 40)
	c, err := tp.Counter(0, &operator.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	base := c.Base()
	t.Logf("after a counter counted to 40, ours starts at %d", base)
	if base <= 40 {
		t.Fatalf("the counter's base is %d; the test needs a TPM that starts it above 40",
			base)
	}
	if v, err := c.Read(); err != nil || v != 1 {
		t.Fatalf("the new counter reads version %d, %v; want 1", v, err)
	}

	b, err := tp.Seal([]byte("signing key"), SealOptions{Authority: &operator.PublicKey,
		Base: base})
	if err != nil {
		t.Fatal(err)
	}
	approval := func(base, version uint64) *Approval {
		a := approve(t, tp, operator, []int{7}, c.Index(), version)
		a.Base = base
		if err := a.Sign(operator); err != nil {
			t.Fatal(err)
		}
		return a
	}
	for v := uint64(1); v <= 2; v++ {
		if _, err := tp.Unseal(b, approval(base, v)); err != nil {
			t.Fatalf("Unseal with the approval of version %d at version 1: %v", v, err)
		}
	}
	if err := c.Advance(signAdvance(t, c, operator, 2)); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Read(); err != nil || v != 2 {
		t.Fatalf("after the advance to 2 the counter reads %d, %v", v, err)
	}
	_, err = tp.Unseal(b, approval(base, 1))
	if !errors.Is(err, ErrNotApproved) || !bytes.Contains([]byte(err.Error()),
		[]byte("is at 2")) {
		t.Fatalf("Unseal with version 1's approval at version 2: %v, want ErrNotApproved "+
			"saying the counter is at 2", err)
	}
	if _, err := tp.Unseal(b, approval(base, 2)); err != nil {
		t.Fatalf("Unseal with version 2's approval at version 2: %v", err)
	}

	// An approval for base 1 and version base+1 compares the counter with
	// the value it holds now; the software refuses it for its base, and so
	// does the TPM, whose sealed policy names the base.
	wrong := approval(1, base+1)
	if _, err := tp.Unseal(b, wrong); !errors.Is(err, ErrNotApproved) {
		t.Fatalf("Unseal with an approval for base 1: %v, want ErrNotApproved", err)
	}
	if _, err := tp.unseal(b, &operator.PublicKey, wrong); !errors.Is(err,
		tpm2.TPMRCPolicyFail) {
		t.Fatalf("TPM unseal with an approval for base 1: %v, want a policy failure", err)
	}
	if err := c.Advance(signAdvance(t, c, operator, 1)); !errors.Is(err, ErrRollback) {
		t.Fatalf("Advance back to 1: %v, want ErrRollback", err)
	}
}

// mustName returns the TPM name of c's NV index.
func mustName(t *testing.T, c *Counter) tpm2.TPM2BName {
	t.Helper()
	h, err := c.handle()
	if err != nil {
		t.Fatal(err)
	}
	return h.Name
}
