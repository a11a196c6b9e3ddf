package tpm

import (
	"testing"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// sim is a simulated TPM for one test. The simulator is one per process,
// so tests of this package do not run in parallel.
type sim struct {
	*TPM
	s *simulator.Simulator
}

// newSim starts a simulated TPM freshly manufactured: each has its own
// seeds, so a blob sealed by one is sealed by "another TPM" for the next.
// (The simulator's fixed-seed mode is no use here: it sets the seeds in
// RAM only, and a reset reloads the random ones from NV storage.)
func newSim(t testing.TB) *sim {
	t.Helper()
	s, err := simulator.Get()
	if err != nil {
		t.Fatalf("start the TPM simulator: %v", err)
	}
	st := &sim{TPM: New(transport.FromReadWriter(s)), s: s}
	t.Cleanup(st.close)
	return st
}

// close stops the simulator, letting the next newSim start one.
func (s *sim) close() {
	if !s.s.IsClosed() {
		s.s.Close()
	}
}

// reboot resets the simulated TPM as a power cycle does: PCRs and loaded
// objects go, NV storage and seeds stay.
func (s *sim) reboot(t testing.TB) {
	t.Helper()
	if err := s.s.Reset(); err != nil {
		t.Fatalf("reset the TPM simulator: %v", err)
	}
}

// defineOrdinary defines an 8-byte ordinary NV index at index.
func defineOrdinary(t *TPM, index uint32) error {
	_, err := tpm2.NVDefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
			NVIndex:    tpm2.TPMHandle(index),
			NameAlg:    tpm2.TPMAlgSHA256,
			Attributes: tpm2.TPMANV{OwnerWrite: true, OwnerRead: true, NoDA: true},
			DataSize:   8,
		}),
	}.Execute(t.t)
	return err
}
