package etagcache

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sampleEntry() *Entry {
	return &Entry{
		Status: 200,
		Header: http.Header{
			"Etag":         {`W/"abc"`},
			"Content-Type": {"application/json"},
			"Link":         {"<a>; rel=next", "<b>; rel=last"},
			"X-Empty":      {""},
		},
		Body:         []byte(`{"hello":"world"}`),
		VaryNames:    []string{"Accept", "Authorization"},
		VaryDigest:   []byte{1, 2, 3, 4},
		RequestTime:  time.Unix(1700000000, 123456789),
		ResponseTime: time.Unix(1700000001, 5),
	}
}

func TestEntryEncodingRoundTrip(t *testing.T) {
	e := sampleEntry()
	got, err := DecodeEntry(EncodeEntry(e))
	require.NoError(t, err)
	assert.Equal(t, e.Status, got.Status)
	assert.Equal(t, e.Header, got.Header)
	assert.Equal(t, e.Body, got.Body)
	assert.Equal(t, e.VaryNames, got.VaryNames)
	assert.Equal(t, e.VaryDigest, got.VaryDigest)
	assert.True(t, e.RequestTime.Equal(got.RequestTime))
	assert.True(t, e.ResponseTime.Equal(got.ResponseTime))

	meta, err := DecodeEntry(EncodeEntryMeta(e))
	require.NoError(t, err)
	assert.Nil(t, meta.Body)
	assert.Equal(t, e.Header, meta.Header)

	for i := 0; i < 20; i++ {
		e.Header.Set("X-Field-"+string(rune('A'+i)), "v")
	}
	assert.Equal(t, EncodeEntry(e), EncodeEntry(e), "equal entries encoded differently")

	empty, err := DecodeEntry(EncodeEntry(&Entry{Status: 200}))
	require.NoError(t, err)
	assert.Empty(t, empty.Body)
	assert.True(t, empty.RequestTime.IsZero())
}

func TestDecodeEntryRejectsBadInput(t *testing.T) {
	good := EncodeEntry(sampleEntry())
	future := append([]byte(nil), good...)
	future[3] = entryVersion + 1
	tests := map[string][]byte{
		"empty":          nil,
		"bad magic":      []byte("XYZ\x01"),
		"future version": future,
		"truncated":      good[:len(good)-3],
		"trailing bytes": append(append([]byte(nil), good...), 0),
		"zero status":    EncodeEntry(&Entry{Status: 0}),
		"huge count":     []byte("ETC\x01\xc8\x01\x00\x00\xff\xff\xff\xff\x0f"),
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeEntry(in)
			require.ErrorIs(t, err, ErrCorruptEntry)
		})
	}
}

// Any input decodes to an entry or returns an error; none panics, and what
// decodes encodes back to the same bytes' meaning.
func FuzzDecodeEntry(f *testing.F) {
	f.Add(EncodeEntry(sampleEntry()))
	f.Add(EncodeEntryMeta(sampleEntry()))
	f.Add(EncodeEntry(&Entry{Status: 304}))
	f.Add([]byte("ETC\x01"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := DecodeEntry(data)
		if err != nil {
			require.ErrorIs(t, err, ErrCorruptEntry)
			require.Nil(t, e)
			return
		}
		again, err := DecodeEntry(EncodeEntry(e))
		require.NoError(t, err)
		require.Equal(t, e.Status, again.Status)
		require.Equal(t, len(e.Header), len(again.Header))
		require.Equal(t, e.Body, again.Body)
	})
}
