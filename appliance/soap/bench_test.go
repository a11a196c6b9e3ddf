package soap

import (
	"strings"
	"testing"
)

// BenchmarkParseRequestLongText parses a 10 KB request whose body is
// mostly one long text element of plain ASCII, the shape of the load
// benchmark's searchPersons with its long purpose.
func BenchmarkParseRequestLongText(b *testing.B) {
	raw := requestLongText(b)
	benchParse(b, raw, false)
}

// BenchmarkParseResponseSmall parses a response of about 1.3 KB: the
// X-Road header and one person record, so that the header dominates.
func BenchmarkParseResponseSmall(b *testing.B) {
	h := testHeader()
	body := `<p:getPersonByPinResponse xmlns:p="http://asan.gov.az/producer">` +
		`<person xmlns="http://asan.gov.az/producer"><fin>E2W9LGE</fin>` +
		`<givenName>Ramil</givenName><surname>Əliyev</surname>` +
		`<patronymic>Orxan oğlu</patronymic><gender>M</gender>` +
		`<birthDate>1983-11-04</birthDate><birthPlace>Qəbələ</birthPlace>` +
		`<address>Gəncə ş., Nəriman Nərimanov prospekti, ev 14, mənzil 2</address>` +
		`</person></p:getPersonByPinResponse>`
	benchParse(b, NewResponse(h, []byte(body)), true)
}

func benchParse(b *testing.B, raw []byte, response bool) {
	b.Helper()
	if _, err := parse(raw, DefaultLimits(), response); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if response {
			_, _ = ParseResponse(raw, DefaultLimits())
		} else {
			_, _ = ParseRequest(raw, DefaultLimits())
		}
	}
}

// requestLongText returns a request of exactly 10240 bytes whose body
// holds a few short fields and one long plain-ASCII one.
func requestLongText(tb testing.TB) []byte {
	build := func(n int) []byte {
		body := `<p:getPersonByPin xmlns:p="http://asan.gov.az/producer">` +
			`<p:surname>Əliyev</p:surname><p:maxResults>1</p:maxResults>` +
			`<p:purpose>` + strings.Repeat("a", n) + `</p:purpose></p:getPersonByPin>`
		return NewRequest(testHeader(), []byte(body))
	}
	raw := build(10<<10 - len(build(0)))
	if len(raw) != 10<<10 {
		tb.Fatalf("the request is %d bytes, want %d", len(raw), 10<<10)
	}
	return raw
}
