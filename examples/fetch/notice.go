package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// noticeHandler writes each log record as one line for a person: "fetch:",
// the message without the library's prefix, then the attributes that help
// (where a damaged file went, what failed), as "key: value".
type noticeHandler struct {
	w     io.Writer
	mu    *sync.Mutex
	attrs []slog.Attr
}

func (h noticeHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h noticeHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString("fetch: ")
	b.WriteString(strings.TrimPrefix(r.Message, "etagcache: "))
	add := func(a slog.Attr) bool {
		switch a.Key {
		case "moved_to", "err", "reason":
			fmt.Fprintf(&b, "; %s: %s", strings.ReplaceAll(a.Key, "_", " "), oneLine(a.Value.String()))
		}
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	b.WriteByte('\n')
	if h.mu != nil {
		h.mu.Lock()
		defer h.mu.Unlock()
	}
	_, err := io.WriteString(h.w, b.String())
	return err
}

func (h noticeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return h
}

func (h noticeHandler) WithGroup(string) slog.Handler { return h }
