package tpm

import (
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

func TestCounterOnlyMovesForward(t *testing.T) {
	tp := newSim(t)
	c, err := tp.Counter(0)
	if err != nil {
		t.Fatal(err)
	}
	start, err := c.Read()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a new counter starts at %d", start)
	if start == 0 {
		t.Fatalf("a new counter reads 0; it must be initialised (written) at definition")
	}
	if err := c.Advance(start + 5); err != nil {
		t.Fatal(err)
	}
	if err := c.Advance(start + 5); err != nil {
		t.Errorf("Advance to the current value: %v", err)
	}
	err = c.Advance(start + 2)
	var re *RollbackError
	if !errors.As(err, &re) || !errors.Is(err, ErrRollback) {
		t.Fatalf("Advance backwards: %v, want *RollbackError", err)
	}
	if re.Current != start+5 || re.Requested != start+2 {
		t.Errorf("RollbackError = %+v", re)
	}
	if err := c.Advance(start + 5 + MaxAdvance + 1); err == nil {
		t.Errorf("Advance by more than MaxAdvance succeeded")
	}

	// A power cycle keeps it; reopening finds the same counter.
	tp.reboot(t)
	c, err = tp.Counter(0)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.Read(); err != nil || got != start+5 {
		t.Fatalf("after reboot the counter reads %d, %v; want %d", got, err, start+5)
	}
	if err := c.Advance(start + 4); !errors.Is(err, ErrRollback) {
		t.Fatalf("Advance backwards after reboot: %v, want ErrRollback", err)
	}
}

func TestCounterRefusesForeignIndex(t *testing.T) {
	tp := newSim(t)
	if _, err := tp.Counter(0x81000001); err == nil {
		t.Errorf("Counter at a persistent-object handle succeeded")
	}
	// Our counter at one index, then a different definition asked for at
	// the same index by another attribute set is refused: simulate by
	// defining an ordinary index there first.
	if err := defineOrdinary(tp.TPM, DefaultCounterIndex+1); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Counter(DefaultCounterIndex + 1); err == nil {
		t.Errorf("Counter over an ordinary NV index succeeded")
	}
}

// Clause 6.2.3: root on the box may delete the counter, since the owner
// authorisation is empty, but a counter defined again at the same index
// starts above every value the old one held, so it still refuses an image
// older than the newest committed one.
func TestCounterRedefinedDoesNotMoveBack(t *testing.T) {
	tp := newSim(t)
	c, err := tp.Counter(0)
	if err != nil {
		t.Fatal(err)
	}
	start, err := c.Read()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Advance(start + 5); err != nil {
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

	c, err = tp.Counter(0)
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
	if err := c.Advance(start + 4); !errors.Is(err, ErrRollback) {
		t.Fatalf("Advance to %d after redefinition: %v, want ErrRollback", start+4, err)
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
