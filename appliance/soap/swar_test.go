package soap

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// plainRunBytes is plainRun one byte at a time: the reference.
func plainRunBytes(raw []byte, i int) int {
	for i < len(raw) && plainText[raw[i]] {
		i++
	}
	return i
}

// TestMayStopNeverMisses puts every byte value at every position of a word
// of plain bytes: mayStop must report each byte that is not plainText.
func TestMayStopNeverMisses(t *testing.T) {
	for _, fill := range []byte{'a', ' ', '~', '=', '$', '(', ';', '?'} {
		for pos := range 8 {
			for c := range 256 {
				w := []byte(strings.Repeat(string(fill), 8))
				w[pos] = byte(c)
				stop := mayStop(binary.LittleEndian.Uint64(w))
				if !plainText[c] && !stop {
					t.Errorf("mayStop misses byte %#x at %d in %q", c, pos, w)
				}
				if plainText[c] && c >= 0x20 && c < 0x80 && c != '#' && stop {
					t.Errorf("mayStop doubts plain byte %#x at %d in %q", c, pos, w)
				}
			}
		}
	}
}

// TestMayStopRandom checks mayStop against the table on random words,
// which hold several special bytes at once.
func TestMayStopRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	special := []byte("<>&\"'#\x00\x01\x1f\t\n\r\x7f\x80\xbf\xbe\xef\xff ]a")
	var w [8]byte
	for range 1 << 20 {
		for k := range w {
			if r.IntN(3) == 0 {
				w[k] = special[r.IntN(len(special))]
			} else {
				w[k] = byte(r.IntN(256))
			}
		}
		plain := true
		for _, c := range w {
			plain = plain && plainText[c]
		}
		if !plain && !mayStop(binary.LittleEndian.Uint64(w[:])) {
			t.Fatalf("mayStop misses a stop byte in %q", w)
		}
	}
}

// TestPlainRun checks plainRun against the byte loop for every start and
// every stop byte at every offset of texts that straddle words.
func TestPlainRun(t *testing.T) {
	stops := []string{"<", ">", "&", "\"", "'", "\r", "\x00", "\x1f", "\xef\xbf\xbe",
		"\xef\xbf\xbf", "\xef\xbb\xbf", "]]>", "\t", "\n", "#", "é", "Ə", "\U0001F600"}
	for _, stop := range stops {
		for n := range 40 {
			for _, fill := range []string{"a", "\t", "xé"} {
				text := []byte(strings.Repeat(fill, n)[:n] + stop + strings.Repeat("b", 17))
				for i := range min(len(text), 12) {
					if got, want := plainRun(text, i), plainRunBytes(text, i); got != want {
						t.Fatalf("plainRun(%q, %d) = %d, want %d", text, i, got, want)
					}
				}
			}
		}
	}
	for n := range 20 {
		text := []byte(strings.Repeat("a", n))
		if got := plainRun(text, 0); got != n {
			t.Fatalf("plainRun of %d plain bytes = %d", n, got)
		}
	}
}

// TestTextFastPathDifferential puts each stop byte, and sequences that
// need more than one byte to judge, at each offset of a long text in a
// request, and checks the scanner against encoding/xml on each.
func TestTextFastPathDifferential(t *testing.T) {
	tmpl := string(NewRequest(testHeader(), []byte(testBody)))
	for _, stop := range []string{"<", ">", "&", "&amp;", "\"", "'", "\r", "\r\n", "\x00",
		"\x1f", "\x7f", "\xef\xbf\xbe", "\xef\xbf\xbf", "\xef\xbf\xbd", "\uFEFF", "]]>",
		"]]&gt;", "\t", "é", "\U0001F600", "#", "<![CDATA[x]]>", "<!--c-->"} {
		for pre := range 17 {
			text := strings.Repeat("a", pre) + stop + strings.Repeat("z", 19)
			for _, wrap := range []string{"<pin>%s</pin>", "<pin a=\"%s\"/>",
				"<pin a='%s'/>", "<pin><![CDATA[%s]]></pin>"} {
				el := strings.Replace(wrap, "%s", text, 1)
				checkDifferential(t, []byte(strings.Replace(tmpl, xPin, el, 1)))
			}
		}
	}
}

// TestManyBindingsDifferential declares more namespaces than fewBindings,
// shadowing and unshadowing prefixes, so that resolve works through its
// slice and then its map, and checks the scanner against encoding/xml.
func TestManyBindingsDifferential(t *testing.T) {
	tmpl := string(NewRequest(testHeader(), []byte(testBody)))
	for _, n := range []int{1, fewBindings - 1, fewBindings, fewBindings + 1, 40} {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "<a:e%d xmlns:a='urn:a%d' xmlns:b%d='urn:b%d'", i, i, i, i)
			if i%3 == 0 {
				fmt.Fprintf(&b, " xmlns='urn:d%d'", i)
			}
			fmt.Fprintf(&b, " b%d:x='1'><b%d:f/><g/>", i/2, i/2)
		}
		for i := n - 1; i >= 0; i-- {
			fmt.Fprintf(&b, "<a:h/><b0:h/><h/></a:e%d>", i)
		}
		// Out of scope again: refused by both.
		undeclared := fmt.Sprintf("<b%d:late/>", n-1)
		for _, tail := range []string{"", undeclared} {
			el := "<pin>" + b.String() + tail + "</pin>"
			raw := []byte(strings.Replace(tmpl, xPin, el, 1))
			// The envelope binds p too, which the body element rebinds.
			decl := strings.Repeat(" ", n) + " xmlns:p='urn:wrong'"
			for i := range n {
				decl += fmt.Sprintf(" xmlns:z%d='urn:z%d'", i, i)
			}
			raw = bytes.Replace(raw, []byte("<SOAP-ENV:Envelope "),
				[]byte("<SOAP-ENV:Envelope"+decl+" "), 1)
			checkDifferential(t, raw)
			if _, err := ParseRequest(raw, DefaultLimits()); (err == nil) != (tail == "") {
				t.Errorf("%d bindings, tail %q: error %v", n, tail, err)
			}
		}
	}
}
