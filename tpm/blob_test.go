package tpm

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestCreateBlobFileNeverReplaces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signing.sealed")
	first := &Blob{Format: blobFormat, SRKName: []byte{1}, Public: []byte{2},
		Private: []byte{3}}
	second := &Blob{Format: blobFormat, SRKName: []byte{9}, Public: []byte{9},
		Private: []byte{9}}
	if err := CreateBlobFile(path, first); err != nil {
		t.Fatal(err)
	}
	if err := CreateBlobFile(path, second); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second CreateBlobFile: %v, want fs.ErrExist", err)
	}
	got, err := ReadBlobFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.SRKName, first.SRKName) {
		t.Fatal("CreateBlobFile replaced the first blob")
	}
	if err := WriteBlobFile(path, second); err != nil {
		t.Fatal(err)
	}
	if got, _ := ReadBlobFile(path); !bytes.Equal(got.SRKName, second.SRKName) {
		t.Fatal("WriteBlobFile did not replace the blob")
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*"))
	if len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

func TestParseBlobRejects(t *testing.T) {
	for _, tt := range []struct{ name, json string }{
		{"not JSON", "sealed"},
		{"format 2", `{"format":2,"srkName":"AQ==","public":"AQ==","private":"AQ=="}`},
		{"no SRK name", `{"format":1,"public":"AQ==","private":"AQ=="}`},
		{"no private part", `{"format":1,"srkName":"AQ==","public":"AQ=="}`},
	} {
		if _, err := ParseBlob([]byte(tt.json)); err == nil {
			t.Errorf("%s: ParseBlob succeeded", tt.name)
		}
	}
	path := filepath.Join(t.TempDir(), "x.sealed")
	if err := os.WriteFile(path, []byte(`{"format":1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadBlobFile(path); err == nil {
		t.Error("ReadBlobFile of an incomplete blob succeeded")
	}
}
