package server_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/qapi-az/qapi/appliance/server"
	"github.com/qapi-az/qapi/internal/sampleis"
)

// BenchmarkExchange drives getPerson exchanges through the client's and
// the provider's security servers to the register, in one process over TLS
// on loopback, with the message log on (records durable before each step,
// 2.2.2) and off, so that one run gives the log's cost as a ratio. Run it
// with -cpu to set the concurrent clients per core, e.g.
//
//	go test -run XXX -bench Exchange -cpu 2 ./appliance/server/
func BenchmarkExchange(b *testing.B) {
	for _, bb := range []struct {
		name string
		opts func(*server.Options)
	}{
		{"log=on", nil},
		{"log=off", server.DiscardMessageLog},
	} {
		b.Run(bb.name, func(b *testing.B) {
			e := buildEnv(b, &env{is: sampleis.New(), editOptions: bb.opts}, nil, nil)
			url, fin := e.clientURL(), e.is.Persons()[7].FIN
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req := sampleis.GetPersonRequest(header(getPerson, newID()), fin)
					resp, err := hc.Post(url, "text/xml; charset=utf-8",
						bytes.NewReader(req))
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "exchanges/s")
		})
	}
}
