package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// One small scenario end to end: the table goes to stdout and to -o.
func TestRunWritesTable(t *testing.T) {
	out := filepath.Join(t.TempDir(), "bench.md")
	var stdout, stderr bytes.Buffer
	svg := filepath.Join(t.TempDir(), "bench.svg")
	err := run(context.Background(), []string{"-quick", "-run", "^304 1KiB$", "-o", out, "-svg", svg}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	file, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(file, stdout.Bytes()) {
		t.Error("-o file differs from standard output")
	}
	md := stdout.String()
	for _, want := range []string{
		"| scenario | implementation | ns/request | allocs/request | bytes/request (allocated) | ratio to bare-304 | ratio to httpcache-mem |",
		"| 304 1KiB | bare-304 | ", "| 304 1KiB | etagcache-mem | ", "| 304 1KiB | httpcache-disk | ",
		"**bare-304** is the floor",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("output lacks %q:\n%s", want, md)
		}
	}
	chart, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	// Well-formed XML, one bar per implementation but bare-304.
	d := xml.NewDecoder(bytes.NewReader(chart))
	bars := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("chart is not well-formed: %v", err)
		}
		if el, ok := tok.(xml.StartElement); ok && el.Name.Local == "title" {
			bars++
		}
	}
	if bars != 5 {
		t.Errorf("chart has %d bars, want 5", bars)
	}
	if strings.Contains(md, "64KiB") {
		t.Errorf("-run did not filter the scenarios:\n%s", md)
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-run", "no such scenario"},
		{"-run", "("},
		{"-impls", "bare-304,squid"},
		{"stray"},
	} {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), args, &stdout, &stderr); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
		if stdout.Len() > 0 {
			t.Errorf("run(%q) wrote a table", args)
		}
	}
}
