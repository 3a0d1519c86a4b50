// Command fetch is a small curl-like client with a persistent validator
// cache: the second fetch of an unchanged document costs a 304.
//
//	go run ./examples/fetch [-cache FILE] [-v] URL
//
// The body goes to stdout. With -v, the status, the Cache-Status, the bytes
// the cache saved and the time taken go to stderr. The cache is one bbolt
// file, by default etagcache/fetch.db under the user's cache directory
// (os.UserCacheDir); several fetches can use it at once. A damaged cache
// file is set aside (renamed to FILE.corrupt-<time>) with a one-line notice
// and a new one started; a cache that cannot be opened at all (a folder
// that cannot be written) is skipped with a one-line notice, and the fetch
// goes on without it. Errors (a bad URL, an unreachable host) are one line
// on stderr and exit status 1; -h prints the usage and exits 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/etagcache/etagcache"
)

func main() {
	os.Exit(exitCode(run(os.Args[1:], os.Stdout, os.Stderr), os.Stderr))
}

// exitCode reports err on stderr, in one line, and returns the exit status:
// 0 for none or for -h, 1 otherwise.
func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	}
	fmt.Fprintln(stderr, "fetch:", oneLine(err.Error()))
	return 1
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func run(args []string, stdout, stderr io.Writer) (err error) {
	defer func() {
		// The last line of defence: whatever goes wrong, the user gets one
		// line, not a stack trace.
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error: %v", r)
		}
	}()
	fs := flag.NewFlagSet("fetch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cache := fs.String("cache", "", "cache file (default: etagcache/fetch.db in the user cache directory)")
	verbose := fs.Bool("v", false, "print status, Cache-Status, bytes saved and timings to stderr")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: fetch [-cache FILE] [-v] URL")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("want exactly one URL")
	}
	target, err := checkURL(fs.Arg(0))
	if err != nil {
		return err
	}
	start := time.Now()
	notices := slog.New(noticeHandler{w: stderr, mu: new(sync.Mutex)})
	var rt http.RoundTripper = http.DefaultTransport
	var tr *etagcache.Transport
	if store, err := openCache(*cache, notices); err != nil {
		fmt.Fprintln(stderr, "fetch: running without a cache:", oneLine(err.Error()))
	} else {
		defer func() {
			if cerr := store.Close(); cerr != nil {
				fmt.Fprintln(stderr, "fetch: closing the cache:", oneLine(cerr.Error()))
			}
		}()
		// Store trouble is reported on stderr and never stops the fetch.
		tr = etagcache.NewTransport(store, etagcache.WithLogger(notices))
		rt = tr
	}
	opened := time.Since(start)
	client := &http.Client{Transport: rt, Timeout: 30 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Errorf("%s: %w", target, err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(stdout, resp.Body)
	if err != nil {
		return fmt.Errorf("%s: reading body: %w", target, err)
	}
	if *verbose {
		status := resp.Header.Get("Cache-Status")
		if status == "" {
			status = "(no cache)"
		}
		fmt.Fprintf(stderr, "%s\nCache-Status: %s\n", resp.Status, status)
		if saved := int64(0); tr != nil {
			if saved = tr.Stats().BytesServed; saved > 0 {
				fmt.Fprintf(stderr, "saved: %d of %d body bytes came from the cache\n", saved, n)
			} else {
				fmt.Fprintf(stderr, "saved: 0 bytes (%d body bytes from the origin)\n", n)
			}
		}
		fmt.Fprintf(stderr, "time: %v in all (cache open %v)\n", time.Since(start).Round(time.Microsecond), opened.Round(time.Microsecond))
	}
	if resp.StatusCode >= 400 {
		return fmt.Errorf("%s: %s", target, resp.Status)
	}
	return nil
}

// openCache opens the cache file, at path or the default location, setting
// a damaged one aside.
func openCache(path string, log *slog.Logger) (*etagcache.BoltStore, error) {
	if path == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("no user cache directory (use -cache FILE): %w", err)
		}
		path = filepath.Join(dir, "etagcache", "fetch.db")
	}
	return etagcache.OpenBoltStore(path,
		etagcache.WithBoltRecover(true),
		etagcache.WithBoltLogger(log),
		etagcache.WithBoltMaxBytes(256<<20))
}

// checkURL accepts absolute http and https URLs only, so that a typo is
// reported as such rather than as a failed request.
func checkURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("bad URL %q: %w", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("bad URL %q: want an absolute http:// or https:// URL", s)
	}
	return u.String(), nil
}
