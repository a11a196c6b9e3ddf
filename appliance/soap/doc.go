// Package soap parses and builds SOAP 1.1 messages with the X-Road message
// protocol 4.0 headers, the wire format between an information system and
// its security server (clause 5.1).
//
// # Parsing
//
// ParseRequest and ParseResponse read a message as a token stream and keep
// only what the exchange needs: the X-Road headers, the name of the Body's
// element, and a Fault when the Body is one. They are strict and bounded:
// a message over Limits.MaxBytes (clause 5.2: 10 KB), not UTF-8, with a DTD
// or an entity other than the five predefined ones, nesting deeper than
// Limits.MaxDepth, or breaking a rule of SOAP 1.1 or of the X-Road
// protocol is refused with a *Fault whose Code says which rule. No tree of
// the message is built, and Message.Raw is the exact bytes parsed: a
// message passed on is never re-serialised.
//
// The tokenizer is this package's own rather than encoding/xml's: it
// works on the message's bytes in place and accepts what encoding/xml's
// strict decoder accepts, no more (a differential fuzz test holds it to
// that), at a small fraction of the allocations.
//
// # Building
//
// NewRequest and NewResponse write envelopes for Go services and tests;
// Fault.Envelope writes the fault a security server answers with.
// WithRequestHash binds a provider's response to its request by inserting
// the requestHash header into the response's bytes; CheckRequestHash
// verifies it on the client's side.
//
// # Fault codes
//
// The Code constants are a stable contract with the information systems
// that call a security server: a code is never renamed or reused.
// docs/faults.md says for each when it is raised and what to do.
package soap
