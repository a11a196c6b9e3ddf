package archive

import (
	"archive/tar"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/qapi-az/qapi/appliance/messagelog"
)

// Format names the container format inside the encryption.
const Format = "qapi-messagelog-archive/1"

// Level says how much of an entry an archive keeps (clause 3.8.4: which data
// is archived).
type Level string

// Levels of archiving. Every level keeps the entry's place in the chain, so
// the chain verifies across entries kept at any level.
const (
	// LevelFull keeps the metadata and the signed message as exchanged.
	LevelFull Level = "full"
	// LevelMetadata keeps the metadata and the SHA-256 of the message.
	LevelMetadata Level = "metadata"
	// LevelLink keeps only the sequence number and the chain hashes.
	LevelLink Level = "link"
)

// Manifest is manifest.json, the first member of the container.
type Manifest struct {
	Format  string    `json:"format"`
	Created time.Time `json:"created"`
	// First and Last are the entries the file holds.
	First uint64 `json:"first"`
	Last  uint64 `json:"last"`
	// Prev is the hash of entry First-1 (all zero for entry 1): the last
	// hash of the archive before, which links the files into one chain.
	Prev string `json:"prev"`
	// LastHash is the hash of entry Last.
	LastHash string `json:"lastHash"`
	// Stamps are the time stamps over entries of this file.
	Stamps []StampMeta `json:"stamps"`
}

// StampMeta describes one time-stamp token of the container.
type StampMeta struct {
	First uint64    `json:"first"`
	Last  uint64    `json:"last"`
	Head  string    `json:"head"` // hex hash of entry Last, the stamped digest
	Time  time.Time `json:"time"`
	File  string    `json:"file"` // timestamps/<Last>.tst, the DER token
}

// EntryMeta is entries/<seq>.json.
type EntryMeta struct {
	Seq   uint64 `json:"seq"`
	Level Level  `json:"level"`
	Prev  string `json:"prev"`
	Hash  string `json:"hash"`
	// The fields below are absent at LevelLink.
	Time         time.Time       `json:"time,omitzero"`
	Kind         messagelog.Kind `json:"kind,omitempty"`
	MessageID    string          `json:"messageId,omitempty"`
	Client       string          `json:"client,omitempty"`
	Service      string          `json:"service,omitempty"`
	ContentType  string          `json:"contentType,omitempty"`
	SignedSHA256 string          `json:"signedSha256,omitempty"`
	// Message is the member holding the signed message as a MIME entity
	// (a Content-Type header, a blank line, the body as exchanged), at
	// LevelFull only.
	Message string `json:"message,omitempty"`
}

func entryName(seq uint64, ext string) string {
	return fmt.Sprintf("entries/%020d.%s", seq, ext)
}

// mimeEntity returns what `openssl cms -verify` reads: the Content-Type
// header the message travelled with and the body as exchanged.
func mimeEntity(contentType string, body []byte) []byte {
	return append([]byte("Content-Type: "+contentType+"\r\n\r\n"), body...)
}

// container builds the tar.
type container struct {
	buf bytes.Buffer
	tw  *tar.Writer
	mod time.Time
}

func newContainer(mod time.Time) *container {
	c := &container{mod: mod.UTC().Truncate(time.Second)}
	c.tw = tar.NewWriter(&c.buf)
	return c
}

func (c *container) add(name string, data []byte) error {
	err := c.tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(data)),
		ModTime: c.mod, Typeflag: tar.TypeReg, Format: tar.FormatPAX})
	if err != nil {
		return err
	}
	_, err = c.tw.Write(data)
	return err
}

func (c *container) addJSON(name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return c.add(name, append(b, '\n'))
}

func (c *container) bytes() ([]byte, error) {
	if err := c.tw.Close(); err != nil {
		return nil, err
	}
	return c.buf.Bytes(), nil
}

// Contents is a decrypted archive file.
type Contents struct {
	Manifest Manifest
	// Entries in order; at LevelMetadata Signed is nil and SignedSHA256 set,
	// at LevelLink only Seq and Prev are set.
	Entries []ArchivedEntry
	// Tokens maps a StampMeta.File to its DER token.
	Tokens map[string][]byte
}

// ArchivedEntry is one entry of an archive.
type ArchivedEntry struct {
	messagelog.Entry
	Level Level
	// Hash is the hash the archive records for the entry; Verify
	// recomputes it where the level allows.
	Hash messagelog.Hash
	// Problem says why the entry could not be read from the container; the
	// other fields but Seq are then empty.
	Problem string
}

// maxMember bounds one member of the container when reading.
const maxMember = 64 << 20

// parseContainer reads the tar. It checks the structure, not the chain or
// the signatures: Verify does that.
func parseContainer(plain []byte) (*Contents, error) {
	tr := tar.NewReader(bytes.NewReader(plain))
	files := map[string][]byte{}
	var order []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the container: %w", err)
		}
		if h.Typeflag != tar.TypeReg || h.Size > maxMember || path.Clean(h.Name) != h.Name ||
			strings.HasPrefix(h.Name, "/") || strings.HasPrefix(h.Name, "..") {
			return nil, fmt.Errorf("container member %q is not a plain file this format has",
				h.Name)
		}
		if _, dup := files[h.Name]; dup {
			return nil, fmt.Errorf("container member %q appears twice", h.Name)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("reading container member %q: %w", h.Name, err)
		}
		files[h.Name] = b
		order = append(order, h.Name)
	}
	if len(order) == 0 || order[0] != "manifest.json" {
		return nil, errors.New("the container does not start with manifest.json")
	}
	c := &Contents{Tokens: map[string][]byte{}}
	if err := json.Unmarshal(files["manifest.json"], &c.Manifest); err != nil {
		return nil, fmt.Errorf("manifest.json: %w", err)
	}
	if c.Manifest.Format != Format {
		return nil, fmt.Errorf("manifest.json: format %q, want %q", c.Manifest.Format, Format)
	}
	if c.Manifest.Last < c.Manifest.First || c.Manifest.First == 0 {
		return nil, fmt.Errorf("manifest.json: entries %d to %d", c.Manifest.First,
			c.Manifest.Last)
	}
	for _, s := range c.Manifest.Stamps {
		tok, ok := files[s.File]
		if !ok {
			return nil, fmt.Errorf("time stamp %s named in the manifest is missing", s.File)
		}
		c.Tokens[s.File] = tok
	}
	for seq := c.Manifest.First; seq <= c.Manifest.Last; seq++ {
		e, err := readEntry(files, seq)
		if err != nil {
			// Keep the place, so that the verifier reports the entry and
			// goes on with the rest.
			e = &ArchivedEntry{Entry: messagelog.Entry{Seq: seq}, Problem: err.Error()}
		}
		c.Entries = append(c.Entries, *e)
	}
	return c, nil
}

// readEntry decodes entries/<seq>.json and its message.
func readEntry(files map[string][]byte, seq uint64) (*ArchivedEntry, error) {
	raw, ok := files[entryName(seq, "json")]
	if !ok {
		return nil, errors.New("entry missing from the container")
	}
	var m EntryMeta
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("entry metadata does not parse: %w", err)
	}
	if m.Seq != seq {
		return nil, fmt.Errorf("entry metadata says it is number %d", m.Seq)
	}
	e := &ArchivedEntry{Level: m.Level}
	e.Seq = seq
	if err := unhex(m.Prev, e.Prev[:]); err != nil {
		return nil, fmt.Errorf("prev: %w", err)
	}
	if err := unhex(m.Hash, e.Hash[:]); err != nil {
		return nil, fmt.Errorf("hash: %w", err)
	}
	switch m.Level {
	case LevelLink:
		return e, nil
	case LevelFull, LevelMetadata:
	default:
		return nil, fmt.Errorf("unknown level %q", m.Level)
	}
	e.Time = m.Time.UTC()
	e.Kind = m.Kind
	e.MessageID = m.MessageID
	e.Client = m.Client
	e.Service = m.Service
	e.ContentType = m.ContentType
	if err := unhex(m.SignedSHA256, e.SignedSHA256[:]); err != nil {
		return nil, fmt.Errorf("signedSha256: %w", err)
	}
	if m.Level == LevelFull {
		ent, ok := files[m.Message]
		if !ok || m.Message != entryName(seq, "mime") {
			return nil, errors.New("the signed message is missing from the container")
		}
		head := mimeEntity(m.ContentType, nil)
		if !bytes.HasPrefix(ent, head) {
			return nil, errors.New("the signed message's Content-Type header differs " +
				"from the metadata")
		}
		e.Signed = bytes.Clone(ent[len(head):])
	}
	return e, nil
}

func unhex(s string, dst []byte) error {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(dst) {
		return fmt.Errorf("%q is not %d hex bytes", s, len(dst))
	}
	copy(dst, b)
	return nil
}
