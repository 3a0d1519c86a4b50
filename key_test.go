package etagcache

import (
	"slices"
	"testing"
)

// TestLowerInPlace checks the word-at-a-time lower-casing against a byte at
// a time: every byte value, at every offset of a buffer longer than a word.
func TestLowerInPlace(t *testing.T) {
	lower := func(b []byte) []byte {
		out := slices.Clone(b)
		for i, c := range out {
			if 'A' <= c && c <= 'Z' {
				out[i] = c + 'a' - 'A'
			}
		}
		return out
	}
	for pos := range 19 {
		for c := range 256 {
			b := []byte("Mixed-CASE_host.EXAMPLE:80")[:19]
			b[pos] = byte(c)
			want := lower(b)
			lowerInPlace(b)
			if !slices.Equal(b, want) {
				t.Fatalf("byte %#x at %d: got %q, want %q", c, pos, b, want)
			}
		}
	}
}
