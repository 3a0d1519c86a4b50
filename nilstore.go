package etagcache

import "reflect"

// isNil reports whether s is nil or holds a nil pointer (or other nil
// reference), as a failed constructor's result does: calling a method on
// it would panic on the first request instead of at construction.
func isNil(s Store) bool {
	if s == nil {
		return true
	}
	switch v := reflect.ValueOf(s); v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan, reflect.Interface:
		return v.IsNil()
	}
	return false
}
