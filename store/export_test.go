package store

// Internals the black-box tests need to forge files (a future format, a
// reservation written by a crashed process).
var (
	BucketMeta   = bucketMeta
	MetaFormat   = metaFormat
	MetaReserved = metaReserved
)

const LamportBlock = lamportBlock
