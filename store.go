package etagcache

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"
)

// ErrNotFound is returned by a Store when it holds no entry for the key and
// variant asked for. The transport treats it as an ordinary miss: it is not
// logged and not counted as a store error.
var ErrNotFound = errors.New("etagcache: entry not found")

// ErrCorruptEntry is wrapped by the errors of DecodeEntry. A Store that finds
// a record it cannot decode should delete it and report ErrNotFound.
var ErrCorruptEntry = errors.New("etagcache: corrupt entry")

// Entry is one stored response: a single variant of one resource.
//
// An Entry handed to Store.Put or returned by Store.Get must be treated as
// immutable by both sides: the transport never modifies an entry it got from
// a store, and a store may keep the Entry (and its Body) it was given without
// copying. This is what lets the memory store serve a hit without copying a
// single body byte.
type Entry struct {
	// Status is the status code of the stored response (200).
	Status int
	// Header is the stored response header, without hop-by-hop fields and
	// Set-Cookie.
	Header http.Header
	// Body is the complete response body.
	Body []byte
	// VaryNames are the canonical request header names listed by the
	// response's Vary field, in the order the response gave them.
	VaryNames []string
	// VaryDigest is a SHA-256 digest of the request's values for VaryNames
	// (and of the request's credentials). Request values themselves are never
	// stored.
	VaryDigest []byte
	// RequestTime and ResponseTime are when the request that produced (or
	// last revalidated) the entry was sent and its response received.
	RequestTime  time.Time
	ResponseTime time.Time

	memo *entryMemo // see withMemo
}

// Store keeps entries for the transport. Entries are grouped by key (the
// normalised URL of a resource); each group holds one entry per variant (one
// per combination of credentials and Vary-named request values). Both key and
// variant are opaque strings chosen by the transport: no credential or
// request value appears in them in clear text.
//
// A Store must be safe for concurrent use. Every method receives the context
// of the request it serves and should give up when it is done.
type Store interface {
	// Get returns the entry stored under key and variant, or ErrNotFound.
	Get(ctx context.Context, key, variant string) (*Entry, error)
	// Put stores e under key and variant, replacing any entry there.
	Put(ctx context.Context, key, variant string, e *Entry) error
	// Delete removes every variant stored under key. Deleting a key that
	// holds nothing is not an error. A store without atomic updates must at
	// least promise that no entry written before Delete began is returned by
	// a Get that starts after Delete returned.
	Delete(ctx context.Context, key string) error
}

// HeaderUpdater is implemented by stores that can replace the metadata of an
// entry (everything but the body) without rewriting the body. The transport
// uses it after a 304 Not Modified; for stores without it, it falls back to
// Put with the whole entry.
type HeaderUpdater interface {
	// UpdateHeader replaces the metadata of the entry stored under key and
	// variant with that of e, keeping the stored body.
	//
	// e.Body is the body the update confirms, as the store's Get returned
	// it (the transport passes a copy of the Entry it got, with the 304's
	// header). The store writes nothing and returns ErrNotFound unless the
	// body it holds under key and variant is that body, compared exactly
	// (by content; a store may first recognise the very slice its Get
	// handed out), and the stored entry passes e.SameValidators. The check
	// and the update are one atomic step: representations that share a
	// validator (one ETag for every Vary-selected variant, or for gzip and
	// identity) differ only in their bodies, and another writer may store
	// one of them in the slot between the transport's Get and its update.
	// ErrNotFound is also the answer when there is no such entry, or when
	// it is corrupt (the store should then remove it).
	UpdateHeader(ctx context.Context, key, variant string, e *Entry) error
}

// Invalidator is implemented by stores that remember invalidations, so that
// an invalidation made through one Transport wins over a write of an older
// response made through another sharing the store (RFC 9111 §4.4).
//
// A Transport invalidates a resource once an unsafe request to it (POST,
// PUT, DELETE...) has succeeded, and on Purge. A response requested before
// then, through any Transport sharing the store, may still be arriving: a
// body streaming to its caller, a background refresh. It is Put once it
// is complete; after a plain Delete it would land in the emptied slot, and
// in freshness mode be served for its whole lifetime. For stores without
// Invalidator the Transport deletes, and the promise holds only between
// the requests of one Transport.
type Invalidator interface {
	// Invalidate removes every variant stored under key, as Delete does,
	// and from then on drops any Put under key of an entry whose
	// RequestTime is before at: Put returns nil and stores nothing. A zero
	// RequestTime counts as before any invalidation. Puts of entries
	// requested at or after at, and Puts under other keys, are stored as
	// usual.
	//
	// What the store remembers is a tombstone per key: the latest at the
	// key was invalidated at (an Invalidate with an earlier at does not
	// lower it). Delete leaves tombstones alone: it removes entries, and an
	// older write is no less stale for it. A store bounds what it remembers
	// and documents how: a number of keys, past which it may forget the
	// oldest tombstones if it then drops every Put requested before the
	// latest at it forgot (a floor: an old request still in flight may be
	// refused, which costs a miss, never a stale entry); or a time after
	// which a tombstone is forgotten (a request in flight for longer may
	// then store its answer).
	//
	// UpdateHeader needs no check: it writes only onto the body it
	// confirms, and the entries an invalidation removed are gone, so an
	// update on behalf of an older request finds nothing to confirm and
	// returns ErrNotFound.
	//
	// at comes from the invalidating Transport's clock, RequestTime from
	// the writing Transport's: Transports on different machines sharing a
	// store need clocks that agree. A store may add a margin for their
	// skew, dropping also Puts requested up to that margin after at; it
	// then says so, since such a Put is a miss later.
	Invalidate(ctx context.Context, key string, at time.Time) error
}

// sameBody reports whether a and b hold the same bytes; at once when they
// are the same slice, as the body a store's Get handed out is.
func sameBody(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 || &a[0] == &b[0] {
		return true
	}
	return bytes.Equal(a, b)
}

// SameValidators reports whether e and o carry validators of the same
// representation: ETag fields that match under the weak comparison of
// RFC 9110 §8.8.3.2, or, where neither has an ETag, equal Last-Modified
// fields. A HeaderUpdater checks it, with the body, so that the header of
// one response never lands on the body of another.
func (e *Entry) SameValidators(o *Entry) bool {
	a, b := e.Header.Get("Etag"), o.Header.Get("Etag")
	if a != "" || b != "" {
		return weakMatch(a, b)
	}
	return e.Header.Get("Last-Modified") == o.Header.Get("Last-Modified")
}

// The binary form of an Entry, for stores that keep bytes:
//
//	magic "ETC" | version byte
//	uvarint status
//	varint request time, varint response time (Unix nanoseconds)
//	uvarint n, then n Vary names (uvarint length + bytes)
//	uvarint length + Vary digest
//	uvarint n header fields; each: name, uvarint m, m values
//	uvarint length + body
//
// Decoding checks every length against what is left, so no input can make it
// allocate more than it was given or read out of bounds.
const (
	entryMagic   = "ETC"
	entryVersion = 1
)

// EncodeEntry returns the binary form of e. DecodeEntry reverses it. Equal
// entries encode to equal bytes (header fields are written in sorted order).
func EncodeEntry(e *Entry) []byte {
	return appendEntry(make([]byte, 0, encodedSize(e)), e, true)
}

// EncodeEntryMeta returns the binary form of e without its body, for stores
// that keep metadata and body in separate records.
func EncodeEntryMeta(e *Entry) []byte {
	return appendEntry(make([]byte, 0, encodedSize(e)-len(e.Body)), e, false)
}

func encodedSize(e *Entry) int {
	n := len(entryMagic) + 1 + 4*binary.MaxVarintLen64 + len(e.VaryDigest) + len(e.Body) + binary.MaxVarintLen64
	for _, v := range e.VaryNames {
		n += binary.MaxVarintLen64 + len(v)
	}
	for k, vs := range e.Header {
		n += 2*binary.MaxVarintLen64 + len(k)
		for _, v := range vs {
			n += binary.MaxVarintLen64 + len(v)
		}
	}
	return n
}

func appendEntry(b []byte, e *Entry, withBody bool) []byte {
	b = append(b, entryMagic...)
	b = append(b, entryVersion)
	b = binary.AppendUvarint(b, uint64(e.Status))
	b = binary.AppendVarint(b, unixNano(e.RequestTime))
	b = binary.AppendVarint(b, unixNano(e.ResponseTime))
	b = binary.AppendUvarint(b, uint64(len(e.VaryNames)))
	for _, v := range e.VaryNames {
		b = appendBytes(b, v)
	}
	b = appendBytes(b, string(e.VaryDigest))
	b = binary.AppendUvarint(b, uint64(len(e.Header)))
	for _, k := range slices.Sorted(maps.Keys(e.Header)) {
		vs := e.Header[k]
		b = appendBytes(b, k)
		b = binary.AppendUvarint(b, uint64(len(vs)))
		for _, v := range vs {
			b = appendBytes(b, v)
		}
	}
	if withBody {
		b = appendBytes(b, string(e.Body))
	} else {
		b = binary.AppendUvarint(b, 0)
	}
	return b
}

func appendBytes(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// DecodeEntry parses the binary form made by EncodeEntry or EncodeEntryMeta.
// Any input either decodes or returns an error wrapping ErrCorruptEntry; it
// never panics. The returned Body and VaryDigest alias data, so data must
// not be modified afterwards (decode a copy of memory that is not yours).
func DecodeEntry(data []byte) (*Entry, error) {
	d := decoder{b: data}
	if len(data) < len(entryMagic)+1 || string(data[:len(entryMagic)]) != entryMagic {
		return nil, fmt.Errorf("%w: bad magic", ErrCorruptEntry)
	}
	if v := data[len(entryMagic)]; v != entryVersion {
		return nil, fmt.Errorf("%w: unknown version %d", ErrCorruptEntry, v)
	}
	d.b = data[len(entryMagic)+1:]
	e := &Entry{}
	status := d.uvarint()
	e.Status = int(status)
	e.RequestTime = fromUnixNano(d.varint())
	e.ResponseTime = fromUnixNano(d.varint())
	if n := d.count(); n > 0 {
		e.VaryNames = make([]string, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			e.VaryNames = append(e.VaryNames, string(d.bytes()))
		}
	}
	if dig := d.bytes(); len(dig) > 0 {
		e.VaryDigest = dig
	}
	if n := d.count(); d.err == nil {
		e.Header = make(http.Header, n)
		for i := 0; i < n && d.err == nil; i++ {
			k := string(d.bytes())
			m := d.count()
			vs := make([]string, 0, m)
			for j := 0; j < m && d.err == nil; j++ {
				vs = append(vs, string(d.bytes()))
			}
			e.Header[k] = vs
		}
	}
	if body := d.bytes(); len(body) > 0 {
		e.Body = body
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = errors.New("trailing bytes")
	}
	if d.err == nil && (status < 100 || status > 999) {
		d.err = fmt.Errorf("status %d out of range", status)
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptEntry, d.err)
	}
	return e, nil
}

// decoder reads the binary form; after the first error every read returns
// zero values, so callers check err once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errors.New("bad uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errors.New("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a number of items that follow; each takes at least one byte,
// so a count larger than what is left is corrupt.
func (d *decoder) count() int {
	v := d.uvarint()
	if v > uint64(len(d.b)) {
		d.err = errors.New("count exceeds data")
		return 0
	}
	return int(v)
}

func (d *decoder) bytes() []byte {
	n := d.count()
	if d.err != nil {
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}
