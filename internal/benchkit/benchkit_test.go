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

// A target is "within noise" only when the median misses and the fastest
// rounds (or, for a spread, bare-304's own spread) say the miss may be
// noise; a clear miss stays a miss.
func TestTargetVerdict(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		t    Target
		want string
	}{
		{Target{Value: 1.05, Limit: 1.10, Met: true, Best: 1.20, Noise: nan}, "met"},
		{Target{Value: 1.13, Limit: 1.10, Best: 1.07, Noise: nan}, "within noise"},
		{Target{Value: 1.13, Limit: 1.10, Best: 1.10, Noise: nan}, "within noise"},
		{Target{Value: 1.30, Limit: 1.10, Best: 1.18, Noise: nan}, "missed"},
		{Target{Value: 1.25, Limit: 1, Best: nan, Noise: 1.8}, "within noise"},
		{Target{Value: 3.5, Limit: 1, Best: nan, Noise: 1.8}, "missed"},
		{Target{Value: 25, Limit: 20, Best: nan, Noise: nan}, "missed"},
	} {
		if got := tc.t.Verdict(); got != tc.want {
			t.Errorf("%+v: Verdict() = %q, want %q", tc.t, got, tc.want)
		}
	}
}

// The targets table of a report built by hand: the spread row names
// bare-304's own spread, and a noisy ratio says so instead of "missed".
func TestMarkdownTargetsWithinNoise(t *testing.T) {
	rd := func(ns ...int) []Round {
		var r []Round
		for _, n := range ns {
			r = append(r, Round{N: 1, Duration: time.Duration(n)})
		}
		return r
	}
	rep := &Report{Config: Config{Rounds: 3, BatchTime: time.Millisecond}}
	allocs := map[string][2]float64{"1KiB": {69.2, 76.6}, "64KiB": {68.5, 75.4}, "1MiB": {67.9, 76.1}, "16MiB": {69.7, 77.8}}
	for _, size := range []string{"1KiB", "64KiB", "1MiB", "16MiB"} {
		sc := Scenario{Name: "304 " + size}
		bare := Result{Scenario: sc, Impl: Bare, Rounds: rd(100, 100, 100), MinNs: 100, AllocsPerOp: allocs[size][0], XBare: 1}
		mem := Result{Scenario: sc, Impl: EtagcacheMem, Rounds: rd(105, 120, 120), MinNs: 105, AllocsPerOp: allocs[size][1], XBare: 1.2}
		rep.Results = append(rep.Results, bare, mem)
	}
	md := rep.Markdown()
	for _, want := range []string{
		"| 304 1KiB, etagcache-mem ≤ 1.10× bare-304 | 1.20× | within noise | 1.05× |",
		"| etagcache-mem allocs/request over bare-304's independent of body size (spread over 4 sizes ≤ 1) | 1.30 allocs spread | within noise | bare-304's spread 1.80 |",
		"| 304 1KiB, etagcache-mem allocs/request ≤ bare-304's + 20 | 7.40 allocs more | met | – |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("targets lack %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "**missed**") {
		t.Errorf("a run within noise says missed:\n%s", md)
	}
}
