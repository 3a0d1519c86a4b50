// Command cachetests-proxy is the forward end of the cache-tests.fyi
// conformance run (scripts/cache-tests.sh): an httputil.ReverseProxy whose
// Transport is an etagcache Transport over a MemoryStore, forwarding every
// request to the suite's origin server. One Transport serves the whole run,
// as the suite expects.
//
//	cachetests-proxy -origin http://127.0.0.1:8000 [-freshness] [-addr-file F]
//
// It listens on a free 127.0.0.1 port and writes "host:port" to -addr-file
// (and to stdout) once it accepts connections.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/etagcache/etagcache"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "cachetests-proxy:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cachetests-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	origin := fs.String("origin", "http://127.0.0.1:8000", "the suite's origin server")
	freshness := fs.Bool("freshness", false, "serve fresh responses without contacting the origin (WithFreshness(true))")
	addrFile := fs.String("addr-file", "", "write the listening host:port to this file")
	staleIfError := fs.Duration("stale-if-error", 0, "WithStaleIfError: serve a stale response when the origin fails")
	oneUser := fs.Bool("one-user", false, "WithPartition: every request is the same user's, as in a browser's cache")
	if err := fs.Parse(args); err != nil {
		return err
	}
	target, err := url.Parse(*origin)
	if err != nil || target.Host == "" {
		return fmt.Errorf("bad -origin %q", *origin)
	}

	base := &http.Transport{
		Proxy:               nil,
		DisableCompression:  true, // the suite checks encodings itself
		MaxIdleConnsPerHost: 16,
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	tr := etagcache.NewTransport(etagcache.NewMemoryStore(0), options(*freshness, *staleIfError, *oneUser, base, log)...)
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host // the origin builds absolute URLs from Host
		},
		Transport: tr,
		ErrorLog:  nil,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			// A cache that cannot reach the origin answers 504 (RFC 9111 §5.2.2.2).
			fmt.Fprintln(stderr, "proxy error:", r.Method, r.URL, err)
			w.WriteHeader(http.StatusGatewayTimeout)
		},
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile, []byte(addr+"\n"), 0o600); err != nil {
			return err
		}
	}
	fmt.Fprintln(stdout, addr)

	srv := &http.Server{Handler: proxy, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
