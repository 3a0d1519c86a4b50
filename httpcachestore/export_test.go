package httpcachestore

// Cache keys of the store's records, for tests that inspect or damage the
// underlying cache directly.

func EntryKey(key, variant string) string { return entryKey(entryDigest(key, variant)) }
func GenKey(key string) string            { return genKey(key) }
func IndexKey(key string) string          { return indexKey(key) }

const MaxIndexed = maxIndexed
