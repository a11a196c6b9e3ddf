package tpm

import (
	"errors"
	"testing"
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
