package benchkit

import (
	"bytes"
	"context"
	"math"
	"strings"
	"testing"
	"time"
)

// The check in Get catches a cache that serves the wrong document, and a
// bare caller holding the wrong body.
func TestGetCatchesWrongBody(t *testing.T) {
	ctx := context.Background()
	o := NewOrigin()
	defer o.Close()
	res0, res1 := o.Resource(1<<10, 0), o.Resource(1<<10, 1)
	if bytes.Equal(res0.Body, res1.Body) || res0.ETag == res1.ETag {
		t.Fatal("resources 0 and 1 are alike")
	}
	buf := make([]byte, 1<<10+1)
	for _, name := range Impls {
		im, err := NewImpl(name, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		u1 := o.URL + Path(im.Index, 1<<10, 1)
		if err := im.Get(ctx, u1, res1, nil, buf); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if err := im.Get(ctx, u1, res0, nil, buf); err == nil || !strings.Contains(err.Error(), "ETag") {
			t.Errorf("%s: GET of resource 1 checked against resource 0: err = %v", name, err)
		}
		if err := im.Close(); err != nil {
			t.Error(err)
		}
	}

	im, err := NewImpl(Bare, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	u0 := o.URL + Path(im.Index, 1<<10, 0)
	if err := im.Get(ctx, u0, res0, bytes.Clone(res0.Body), buf); err != nil {
		t.Errorf("bare-304: %v", err)
	}
	wrong := bytes.Clone(res0.Body)
	wrong[len(wrong)-1] ^= 1
	if err := im.Get(ctx, u0, res0, wrong, buf); err == nil || !strings.Contains(err.Error(), "body differs") {
		t.Errorf("bare-304 holding a wrong body: err = %v", err)
	}
	if err := im.Get(ctx, u0, res0, res0.Body[1:], buf); err == nil || !strings.Contains(err.Error(), "body bytes") {
		t.Errorf("bare-304 holding a short body: err = %v", err)
	}
}

// A steady-state batch that was not all revalidations fails Verify.
func TestVerifyCatchesRefetch(t *testing.T) {
	ctx := context.Background()
	o := NewOrigin()
	defer o.Close()
	sc := Scenarios()[0]
	f, err := NewFixture(ctx, o, sc, EtagcacheMem, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := f.Prepare(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Run(); err != nil {
		t.Fatal(err)
	}
	if err := b.Verify(); err != nil {
		t.Fatalf("steady batch: %v", err)
	}
	if err := f.Impl.Reset(); err != nil { // the entry is gone: a refetch
		t.Fatal(err)
	}
	b, err = f.Prepare(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Run(); err != nil {
		t.Fatal(err)
	}
	if err := b.Verify(); err == nil || !strings.Contains(err.Error(), "1×200") {
		t.Errorf("batch after emptying the cache: Verify = %v", err)
	}
}

func TestRatioIsMedianOfRounds(t *testing.T) {
	rd := func(ns ...int) []Round {
		var r []Round
		for _, n := range ns {
			r = append(r, Round{N: 1, Duration: time.Duration(n)})
		}
		return r
	}
	res := []Result{
		{Impl: Bare, Rounds: rd(100, 200, 100)},
		{Impl: EtagcacheMem, Rounds: rd(110, 260, 300)},
	}
	// Per-round ratios 1.1, 1.3, 3.0: the median is 1.3, though the
	// medians of the times (100 and 260) would say 2.6.
	if got := ratio(res, 1, Bare); math.Abs(got-1.3) > 1e-9 {
		t.Errorf("ratio = %v, want 1.3", got)
	}
	if got := ratio(res, 1, HTTPCacheMem); !math.IsNaN(got) {
		t.Errorf("ratio to an absent implementation = %v, want NaN", got)
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median = %v", got)
	}
}

func TestGroup(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567.4: "1,234,567", -1234: "-1,234", math.NaN(): "–"} {
		if got := group(in); got != want {
			t.Errorf("group(%v) = %q, want %q", in, got, want)
		}
	}
}
