package tpm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// DefaultCounterIndex is the NV index of the anti-rollback counter, in the
// owner's range of NV indexes.
const DefaultCounterIndex uint32 = 0x01_00_51_41

// MaxAdvance bounds one Advance: a TPM counter moves by one per command, so
// a step of millions would take hours, and a version that far ahead is a
// mistake rather than a release.
const MaxAdvance = 4096

// Counter is the anti-rollback counter: a TPM NV counter holding the lowest
// image version the box may boot (clause 6.2.3). The TPM itself refuses to
// move it back; see the package documentation.
type Counter struct {
	t     *TPM
	index tpm2.TPMHandle
}

// counterPublic is the NV public area of the counter at index. written
// sets TPMA_NV_WRITTEN, which the TPM adds at the first increment and which
// is part of the index's name.
func counterPublic(index uint32, written bool) tpm2.TPMSNVPublic {
	return tpm2.TPMSNVPublic{
		NVIndex: tpm2.TPMHandle(index),
		NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{
			NT:         tpm2.TPMNTCounter,
			OwnerWrite: true,
			OwnerRead:  true,
			AuthRead:   true,
			NoDA:       true,
			Written:    written,
		},
		DataSize: 8,
	}
}

// counterName is the TPM name of the initialised counter at index, which
// an approval's TPM2_PolicyNV refers to.
func counterName(index uint32) (tpm2.TPM2BName, error) {
	if index>>24 != 0x01 {
		return tpm2.TPM2BName{}, fmt.Errorf("%#x is not an NV index", index)
	}
	pub := counterPublic(index, true)
	n, err := tpm2.NVName(&pub)
	if err != nil {
		return tpm2.TPM2BName{}, fmt.Errorf("name the counter %#x: %w", index, err)
	}
	return *n, nil
}

// A TPM whose counters ran high before starts ours above 1, and an offset
// kept in software would not help: an approval's TPM2_PolicyNV compares
// the raw value with the image version.
// TODO: map image versions onto a counter that starts above 1.
// TODO: set an owner authorisation so root on the box cannot advance the counter.

// Counter opens the anti-rollback counter at NV index (DefaultCounterIndex
// if zero), defining it on first use. A new counter starts at the value the
// TPM gives it plus one, which is 1 on a TPM that never had a counter: a
// TPM starts each new counter above every counter it ever had, which is
// what keeps deleting and redefining one from moving it back.
func (t *TPM) Counter(index uint32) (*Counter, error) {
	if index == 0 {
		index = DefaultCounterIndex
	}
	if _, err := counterName(index); err != nil {
		return nil, err
	}
	c := &Counter{t: t, index: tpm2.TPMHandle(index)}
	t.mu.Lock()
	defer t.mu.Unlock()

	pub, err := c.public()
	if errors.Is(err, tpm2.TPMRCHandle) {
		_, err = tpm2.NVDefineSpace{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner,
				Auth: tpm2.PasswordAuth(nil)},
			PublicInfo: tpm2.New2B(counterPublic(index, false)),
		}.Execute(t.t)
		if err != nil {
			return nil, t.explain(fmt.Errorf("define the anti-rollback counter %#x: %w",
				index, err))
		}
		pub, err = c.public()
	}
	if err != nil {
		return nil, fmt.Errorf("read the anti-rollback counter %#x: %w", index, err)
	}
	want := counterPublic(index, pub.Attributes.Written)
	if !bytes.Equal(tpm2.Marshal(*pub), tpm2.Marshal(want)) {
		return nil, fmt.Errorf("NV index %#x holds something other than Qapı's "+
			"anti-rollback counter; choose another index or remove it", index)
	}
	if !pub.Attributes.Written {
		if err := c.increment(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Index returns the counter's NV index.
func (c *Counter) Index() uint32 { return uint32(c.index) }

// public reads the counter's NV public area.
func (c *Counter) public() (*tpm2.TPMSNVPublic, error) {
	rsp, err := tpm2.NVReadPublic{NVIndex: c.index}.Execute(c.t.t)
	if err != nil {
		return nil, err
	}
	return rsp.NVPublic.Contents()
}

func (c *Counter) handle() (tpm2.NamedHandle, error) {
	rsp, err := tpm2.NVReadPublic{NVIndex: c.index}.Execute(c.t.t)
	if err != nil {
		return tpm2.NamedHandle{}, fmt.Errorf("read the anti-rollback counter %#x: %w",
			uint32(c.index), err)
	}
	return tpm2.NamedHandle{Handle: c.index, Name: rsp.NVName}, nil
}

func (c *Counter) increment() error {
	h, err := c.handle()
	if err != nil {
		return err
	}
	_, err = tpm2.NVIncrement{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    h,
	}.Execute(c.t.t)
	if err != nil {
		return c.t.explain(fmt.Errorf("advance the anti-rollback counter %#x: %w",
			uint32(c.index), err))
	}
	return nil
}

// Read returns the lowest image version the box may boot.
func (c *Counter) Read() (uint64, error) {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	return c.read()
}

func (c *Counter) read() (uint64, error) {
	h, err := c.handle()
	if err != nil {
		return 0, err
	}
	rsp, err := tpm2.NVRead{
		AuthHandle: tpm2.AuthHandle{Handle: h.Handle, Name: h.Name,
			Auth: tpm2.PasswordAuth(nil)},
		NVIndex: h,
		Size:    8,
	}.Execute(c.t.t)
	if err != nil {
		return 0, c.t.explain(fmt.Errorf("read the anti-rollback counter %#x: %w",
			uint32(c.index), err))
	}
	if len(rsp.Data.Buffer) != 8 {
		return 0, fmt.Errorf("read the anti-rollback counter %#x: got %d bytes, not 8",
			uint32(c.index), len(rsp.Data.Buffer))
	}
	return binary.BigEndian.Uint64(rsp.Data.Buffer), nil
}

// Advance moves the counter to version v, after which images older than v
// no longer boot and their approvals no longer unseal. It returns a
// *RollbackError when v is below the counter, does nothing when v equals
// it, and refuses steps above MaxAdvance.
func (c *Counter) Advance(v uint64) error {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	cur, err := c.read()
	if err != nil {
		return err
	}
	if v < cur {
		return &RollbackError{Current: cur, Requested: v}
	}
	if v-cur > MaxAdvance {
		return fmt.Errorf("advance the anti-rollback counter from %d to %d: steps above %d "+
			"are refused as a likely mistake; advance in smaller steps", cur, v, MaxAdvance)
	}
	for ; cur < v; cur++ {
		if err := c.increment(); err != nil {
			return err
		}
	}
	return nil
}
