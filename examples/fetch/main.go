// Command fetch is a small curl-like client with a persistent validator
// cache: the second fetch of an unchanged document costs a 304.
//
//	go run ./examples/fetch [-cache FILE] [-v] URL
//
// The body goes to stdout. With -v, the Cache-Status and the bytes the cache
// saved go to stderr. The cache is one bbolt file, by default under the
// user's cache directory. Errors (a bad URL, an unreachable host, a cache
// file in use by another process) are one line on stderr and exit status 1.
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
	"time"

	"github.com/etagcache/etagcache"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "fetch:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fetch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cache := fs.String("cache", "", "cache file (default: fetch.db in the user cache directory)")
	verbose := fs.Bool("v", false, "print Cache-Status and bytes saved to stderr")
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
	if *cache == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return fmt.Errorf("no cache directory (use -cache): %w", err)
		}
		*cache = filepath.Join(dir, "etagcache", "fetch.db")
	}

	store, err := etagcache.OpenBoltStore(*cache)
	if errors.Is(err, etagcache.ErrStoreLocked) {
		return fmt.Errorf("cache file %s is in use by another process", *cache)
	}
	if err != nil {
		return err
	}
	defer store.Close()

	// Store trouble is reported once, on stderr, and never stops the fetch.
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	tr := etagcache.NewTransport(store, etagcache.WithLogger(log))
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}

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
		fmt.Fprintf(stderr, "%s\nCache-Status: %s\n", resp.Status, resp.Header.Get("Cache-Status"))
		if saved := tr.Stats().BytesServed; saved > 0 {
			fmt.Fprintf(stderr, "saved: %d of %d body bytes came from the cache\n", saved, n)
		} else {
			fmt.Fprintf(stderr, "saved: 0 bytes (%d body bytes from the origin)\n", n)
		}
	}
	if resp.StatusCode >= 400 {
		return fmt.Errorf("%s: %s", target, resp.Status)
	}
	return nil
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
