package events

import (
	"bytes"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sample(id string) Record {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	return Record{
		Role: RoleProvider, MessageID: id,
		Client:    "AZ/GOV/1001/REG",
		Service:   "AZ/GOV/2001/POP/getPerson/v1",
		Received:  now,
		Forwarded: now.Add(2 * time.Millisecond),
		Answered:  now.Add(12 * time.Millisecond),
		Done:      now.Add(15 * time.Millisecond),
		Result:    ResultOK, RequestBytes: 900, ResponseBytes: 1200,
	}
}

func TestProcessingTimeExcludesNextHop(t *testing.T) {
	r := sample("a")
	if got, want := r.ProcessingTime(), 5*time.Millisecond; got != want {
		t.Fatalf("ProcessingTime = %v, want %v (15 ms total minus 10 ms at the provider)",
			got, want)
	}
}

func TestWireRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	enc := NewEncoder(&buf)
	r := sample("id-1")
	msgs := []*Message{
		{Type: TypeExchange, Exchange: &r},
		{Type: TypeDropped, Dropped: 42, Since: time.Date(2026, 12, 3, 9, 0, 0, 7, time.UTC)},
		{Type: TypeStatus, Status: &Status{TimestampLag: time.Second,
			Links: []LinkStatus{{Role: "external", Name: "eth0", Up: true, SpeedMbps: 1000,
				FullDuplex: true}}}},
	}
	for _, m := range msgs {
		if err := enc.Encode(m); err != nil {
			t.Fatalf("Encode(%s): %v", m.Type, err)
		}
	}
	dec := NewDecoder(&buf)
	for _, want := range msgs {
		got, err := dec.Decode()
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		if got.Type != want.Type {
			t.Fatalf("type %s, want %s", got.Type, want.Type)
		}
		if got.Dropped != want.Dropped || !got.Since.Equal(want.Since) {
			t.Fatalf("dropped %d since %v, want %d since %v", got.Dropped, got.Since,
				want.Dropped, want.Since)
		}
	}
	if _, err := dec.Decode(); err != io.EOF {
		t.Fatalf("Decode at end = %v, want io.EOF", err)
	}
}

// Clause 2.7: nothing in the format can carry a message body.
func TestDecoderRefusesPayloadCarriers(t *testing.T) {
	long := strings.Repeat("x", MaxLine)
	cases := map[string]string{
		"unknown field": `{"type":"exchange","exchange":{"role":"client","messageId":"a",` +
			`"client":"AZ/GOV/1","result":"ok","body":"<soap/>"}}`,
		"id with spaces": `{"type":"exchange","exchange":{"role":"client",` +
			`"messageId":"a b","client":"AZ/GOV/1","result":"ok"}}`,
		"client not an identifier": `{"type":"exchange","exchange":{"role":"client",` +
			`"messageId":"a","client":"<Envelope>","result":"ok"}}`,
		"fault code free text": `{"type":"exchange","exchange":{"role":"client",` +
			`"messageId":"a","client":"AZ/GOV/1","result":"fault",` +
			`"faultCode":"Server.x y z"}}`,
		"fault code outside the stable set": `{"type":"exchange","exchange":{"role":` +
			`"client","messageId":"a","client":"AZ/GOV/1","result":"fault",` +
			`"faultCode":"Server.PersonIvanovBornNineteenEighty"}}`,
		"certificate subject with a newline": `{"type":"status","status":{"certificates":` +
			`[{"purpose":"signing","subject":"CN=a\nbody","notAfter":"2027-01-01T00:00:00Z"}]}}`,
		"certificate purpose free text": `{"type":"status","status":{"certificates":` +
			`[{"purpose":"<Body>","subject":"CN=a","notAfter":"2027-01-01T00:00:00Z"}]}}`,
		"link role free text": `{"type":"status","status":{"links":[{"role":"x y",` +
			`"name":"eth0","up":true,"speedMbps":1000,"fullDuplex":true}]}}`,
		"link name too long": `{"type":"status","status":{"links":[{"role":"external",` +
			`"name":"eth0-and-then-some","up":true,"speedMbps":1000,"fullDuplex":true}]}}`,
		"line too long": `{"type":"dropped","dropped":1,"x":"` + long + `"}`,
		"unknown type":  `{"type":"payload"}`,
		"since on an exchange": `{"type":"exchange","since":"2026-12-03T10:00:00Z",` +
			`"exchange":{"role":"client","messageId":"a","client":"AZ/GOV/1","result":"ok"}}`,
		"since as free text": `{"type":"dropped","dropped":1,"since":"<Body/>"}`,
	}
	for name, line := range cases {
		if _, err := NewDecoder(strings.NewReader(line + "\n")).Decode(); err == nil {
			t.Errorf("%s: decoded, want refusal", name)
		}
	}
}

func TestSocketSinkBuffersCountsDropsAndReports(t *testing.T) {
	path := filepath.Join(t.TempDir(), "monitor.sock")
	sink := NewSocketSink(path, SocketOptions{Buffer: 4})
	defer sink.Close()

	// No monitor yet: four records wait, the rest are dropped and counted.
	for i := range 10 {
		sink.Emit(sample("m" + string(rune('a'+i))))
	}
	if got := sink.Dropped(); got != 6 {
		t.Fatalf("Dropped = %d, want 6", got)
	}

	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	dec := NewDecoder(conn)

	first, err := dec.Decode()
	if err != nil {
		t.Fatal(err)
	}
	if first.Type != TypeDropped || first.Dropped != 6 {
		t.Fatalf("first message %+v, want the dropped count 6", first)
	}
	if !first.Since.Equal(sink.Started()) || first.Since.IsZero() {
		t.Fatalf("dropped count since %v, want the sink's start %v", first.Since,
			sink.Started())
	}
	for i := range 4 {
		m, err := dec.Decode()
		if err != nil {
			t.Fatal(err)
		}
		if m.Type != TypeExchange || m.Exchange.MessageID != "m"+string(rune('a'+i)) {
			t.Fatalf("message %d = %+v, want buffered record in order", i, m)
		}
	}
}

// Clause 2.7: the fault code of a service's own fault is text of its
// answer, so only its class reaches the monitor, and the record is sent,
// not dropped, whatever the information system wrote.
func TestSocketSinkSendsOnlyTheClassOfAServiceFault(t *testing.T) {
	path := filepath.Join(t.TempDir(), "monitor.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sink := NewSocketSink(path, SocketOptions{})
	defer sink.Close()

	cases := []struct{ in, want string }{
		{"Client.AccessDenied", "Client.AccessDenied"}, // the server's own
		{"Client.NotFound", FaultServiceClient},
		{"Client", FaultServiceClient}, // soap:Client, prefix stripped
		{"Server", FaultServiceServer},
		{"Server.PersonIvanovBorn1980", FaultServiceServer},
		{"not a code at all", FaultServiceServer},
	}
	for i, c := range cases {
		r := sample("f" + string(rune('a'+i)))
		r.Result, r.FaultCode = ResultFault, c.in
		sink.Emit(r)
	}
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	dec := NewDecoder(conn)
	for _, c := range cases {
		m, err := dec.Decode()
		if err != nil {
			t.Fatalf("%q: %v (dropped %d)", c.in, err, sink.Dropped())
		}
		if got := m.Exchange.FaultCode; got != c.want {
			t.Errorf("fault %q reached the monitor as %q, want %q", c.in, got, c.want)
		}
	}
	if d := sink.Dropped(); d != 0 {
		t.Errorf("Dropped = %d, want 0", d)
	}
}
