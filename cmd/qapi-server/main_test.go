package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/events"
	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/ident"
)

// TestLogSinkNotices: the exchange line of a service with a notice (3.12,
// 3.14) is a warning naming the notice; other exchanges stay at info.
func TestLogSinkNotices(t *testing.T) {
	provider := ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1001",
		SubsystemCode: "EDR"}
	old := ident.Service{Client: provider, ServiceCode: "getPerson", Version: "v1"}
	current := old
	current.Version = "v2"
	date := time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)
	conf := &globalconf.Conf{Notices: []globalconf.Notice{{Kind: globalconf.NoticeEndOfLife,
		Service: old, Effective: date}}}

	var buf bytes.Buffer
	ls := newLogSink(slog.New(slog.NewJSONHandler(&buf, nil)), events.Discard,
		conf.Warnings)
	now := time.Now()
	for i, svc := range []ident.Service{old, current} {
		ls.Emit(events.Record{Role: events.RoleClient, MessageID: fmt.Sprint("m", i),
			Client: "AZ/GOV/2002/POLICE", Service: svc.String(), Received: now, Done: now,
			Result: events.ResultOK})
	}
	ls.close()

	type line struct {
		Level  string   `json:"level"`
		Notice []string `json:"notice"`
	}
	var lines []line
	dec := json.NewDecoder(&buf)
	for dec.More() {
		var l line
		if err := dec.Decode(&l); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), buf.String())
	}
	want := "end-of-life; date=2027-03-01T00:00:00Z; service=" + old.String()
	if lines[0].Level != "WARN" || len(lines[0].Notice) != 1 || lines[0].Notice[0] != want {
		t.Errorf("line of %s = %+v, want a warning with notice %q", old, lines[0], want)
	}
	if lines[1].Level != "INFO" || lines[1].Notice != nil {
		t.Errorf("line of %s = %+v, want info without a notice", current, lines[1])
	}
}
