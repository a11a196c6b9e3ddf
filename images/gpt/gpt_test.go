package gpt

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qapi-az/qapi/internal/testenv"
)

// memDisk is an in-memory disk for WriteTo and Read.
type memDisk []byte

func (d memDisk) WriteAt(p []byte, off int64) (int, error) { return copy(d[off:], p), nil }
func (d memDisk) ReadAt(p []byte, off int64) (int, error)  { return copy(p, d[off:]), nil }

func sample(sectors uint64) *Table {
	return &Table{
		DiskGUID: Derive("disk"),
		Sectors:  sectors,
		Partitions: []Partition{
			{Type: TypeESP, GUID: Derive("esp"), FirstLBA: 2048, LastLBA: 4095, Name: "boot"},
			{Type: TypeLinuxData, GUID: Derive("a"), FirstLBA: 4096, LastLBA: 8191, Name: "root-a"},
			{Type: TypeLinuxData, GUID: Derive("perm"), FirstLBA: 8192, LastLBA: 12287,
				Name: "perm"},
		},
	}
}

func TestRoundTrip(t *testing.T) {
	const sectors = 16384
	d := make(memDisk, sectors*SectorSize)
	want := sample(sectors)
	if err := want.WriteTo(d); err != nil {
		t.Fatal(err)
	}
	got, err := Read(d, int64(len(d)))
	if err != nil {
		t.Fatal(err)
	}
	if got.DiskGUID != want.DiskGUID || len(got.Partitions) != len(want.Partitions) {
		t.Fatalf("Read = %+v, want %+v", got, want)
	}
	for i := range want.Partitions {
		if got.Partitions[i] != want.Partitions[i] {
			t.Errorf("partition %d = %+v, want %+v", i+1, got.Partitions[i], want.Partitions[i])
		}
	}
	if got.NeedsGrow() {
		t.Error("NeedsGrow on a disk of the table's size")
	}

	// Corrupting one entry byte must fail the array CRC.
	d[2*SectorSize+40] ^= 1
	if _, err := Read(d, int64(len(d))); err == nil {
		t.Error("Read accepted a corrupted entry array")
	}
}

func TestGrow(t *testing.T) {
	d := make(memDisk, 32768*SectorSize)
	if err := sample(16384).WriteTo(d); err != nil {
		t.Fatal(err)
	}
	tab, err := Read(d, int64(len(d)))
	if err != nil {
		t.Fatal(err)
	}
	if !tab.NeedsGrow() {
		t.Fatal("NeedsGrow = false on a disk twice the table's size")
	}
	if !tab.GrowLast(2048) {
		t.Fatal("GrowLast = false")
	}
	p := tab.Partitions[2]
	if (p.LastLBA-p.FirstLBA+1)%2048 != 0 || p.LastLBA > tab.LastUsable() ||
		tab.LastUsable()-p.LastLBA >= 2048 {
		t.Fatalf("grown perm %d-%d, last usable %d", p.FirstLBA, p.LastLBA, tab.LastUsable())
	}
	if err := tab.WriteTo(d); err != nil {
		t.Fatal(err)
	}
	again, err := Read(d, int64(len(d)))
	if err != nil || again.NeedsGrow() || again.Partitions[2] != p {
		t.Fatalf("after grow: %+v, %v", again, err)
	}
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		name   string
		mutate func(*Table)
	}{
		{"overlap", func(t *Table) { t.Partitions[1].FirstLBA = 4000 }},
		{"past end", func(t *Table) { t.Partitions[2].LastLBA = t.Sectors - 1 }},
		{"before first usable", func(t *Table) { t.Partitions[0].FirstLBA = 1 }},
		{"reversed", func(t *Table) { t.Partitions[0].LastLBA = 2000 }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tab := sample(16384)
			tt.mutate(tab)
			if err := tab.Validate(); err == nil {
				t.Error("Validate accepted it")
			}
		})
	}
}

func TestGUIDText(t *testing.T) {
	const s = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	if got := MustParse(s).String(); got != s {
		t.Errorf("String = %s, want %s", got, s)
	}
	if Derive("x") == Derive("y") || Derive("x") != Derive("x") {
		t.Error("Derive is not a function of its name")
	}
}

// TestSfdisk has util-linux's sfdisk, which nobody here wrote, read the
// table back.
func TestSfdisk(t *testing.T) {
	sfdisk := testenv.NeedCommand(t, "sfdisk")
	p := filepath.Join(t.TempDir(), "disk")
	d := make(memDisk, 16384*SectorSize)
	if err := sample(16384).WriteTo(d); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, d, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sfdisk, "--verify", "--dump", p).CombinedOutput()
	if err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	s := string(out)
	for _, want := range []string{
		"label: gpt",
		"label-id: " + Derive("disk").String(),
		"start=        2048, size=        2048, type=" + TypeESP.String() +
			", uuid=" + Derive("esp").String() + `, name="boot"`,
		"start=        8192, size=        4096",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("sfdisk output lacks %q:\n%s", want, s)
		}
	}
	if bytes.Contains(out, []byte("rror")) {
		t.Errorf("sfdisk reports an error:\n%s", out)
	}
}
